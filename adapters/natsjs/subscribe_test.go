package natsjs

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	jsapi "github.com/nats-io/nats.go/jetstream"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/test/conformance/eventlog"
	"github.com/kmsbackup/kmsbackup/test/natsserver"
)

// TestSubscriptionOutlivesAFailedRecreation: when the ordered consumer of
// a subscription cannot be recreated under the name the client library
// gives its next one, the subscription starts a new consumer where it
// stopped and goes on delivering, in order, each event once. The test
// plays what a server killed with SIGKILL causes: the library recreates a
// consumer whose server died (the client lost its heartbeats) under a new
// name, the cluster, which has not noticed the death yet, places it on the
// dead server, and every attempt under that name then waits for it. Here
// the name is taken beforehand by a consumer whose start the library may
// not change (nats.go names an ordered consumer's incarnations
// <prefix>_1, <prefix>_2, ...), and the consumer the subscription reads is
// deleted.
func TestSubscriptionOutlivesAFailedRecreation(t *testing.T) {
	url, _ := natsserver.Start(t)
	opts := uniqueOptions()
	l := MustOpen(t, url, opts)
	ctx := t.Context()
	const stream = "kms-recreated"
	evs := eventlog.Events(stream, 3, 6)
	mustAppend(t, l, stream, domain.ExpectNoStream, evs[:3])
	sub, err := l.Subscribe(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	got := collect(t, sub, 3)

	names := l.stream.ConsumerNames(ctx)
	var current string
	for n := range names.Name() {
		current = n
	}
	prefix, ok := strings.CutSuffix(current, "_1")
	if err := names.Err(); err != nil || !ok {
		t.Fatalf("the subscription's consumer is %q (%v), want <prefix>_1", current, err)
	}
	if _, err := l.stream.CreateConsumer(ctx, jsapi.ConsumerConfig{Name: prefix + "_2", DeliverPolicy: jsapi.DeliverByStartSequencePolicy,
		OptStartSeq: 1, AckPolicy: jsapi.AckNonePolicy, MemoryStorage: true, InactiveThreshold: time.Minute, FilterSubject: l.evAll}); err != nil {
		t.Fatal(err)
	}
	if err := l.stream.DeleteConsumer(ctx, current); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, l, stream, domain.ExpectRevision(2), evs[3:])
	got = append(got, collect(t, sub, 3)...)
	if d := cmp.Diff(mustReadStream(t, l, stream), got); d != "" {
		t.Fatalf("delivered (-stream +delivered):\n%s", d)
	}
}
