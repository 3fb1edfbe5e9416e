package natsjs

import (
	"encoding/json"
	"strconv"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/kmsbackup/kmsbackup/test/natsserver"
)

// BenchmarkPublishShapes times, on one server and on a cluster of 3 with
// 3 replicas (both fsyncing every write), the shapes a single-event append
// can take on the server, without the log around them (docs/BENCHMARKS.md,
// "Single appends"):
//
//   - plain: one message on a stream's subject expecting its last
//     sequence (what an append would cost with no event-ID index);
//   - claim+event: the claim of the event ID, then the event, each a
//     plain message with its expectation, one after the other (claim.go);
//   - batch-of-2: the ID marker and the event in one atomic batch (a
//     one-replica server stages it in a file store, a replicated stream
//     in memory).
func BenchmarkPublishShapes(b *testing.B) {
	single, _ := natsserver.Start(b)
	cluster := natsserver.StartCluster(b, 3)
	for _, srv := range []struct {
		name     string
		url      string
		replicas int
	}{{"replicas=1", single, 1}, {"replicas=3", cluster.URL(), 3}} {
		b.Run(srv.name, func(b *testing.B) {
			opts := uniqueOptions()
			opts.Replicas = srv.replicas
			l := MustOpen(b, srv.url, opts)
			event, claim := make([]byte, 200), make([]byte, 40)
			msg := func(subject string, data []byte, expect uint64) *nats.Msg {
				m := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
				m.Header[hdrExpectSubj] = []string{strconv.FormatUint(expect, 10)}
				return m
			}
			request := func(b *testing.B, m *nats.Msg) uint64 {
				resp, err := l.nc.RequestMsg(m, requestTimeout)
				if err != nil {
					b.Fatal(err)
				}
				var ack pubAck
				if err := json.Unmarshal(resp.Data, &ack); err != nil {
					b.Fatal(err)
				}
				if ack.Error != nil {
					b.Fatal(ack.Error)
				}
				return ack.Seq
			}
			b.Run("plain", func(b *testing.B) {
				subj, last := l.evPrefix+nuid.Next(), uint64(0)
				for b.Loop() {
					last = request(b, msg(subj, event, last))
				}
			})
			b.Run("claim+event", func(b *testing.B) {
				subj, last := l.evPrefix+nuid.Next(), uint64(0)
				for b.Loop() {
					request(b, msg(l.idPrefix+nuid.Next(), claim, 0))
					last = request(b, msg(subj, event, last))
				}
			})
			b.Run("batch-of-2", func(b *testing.B) {
				subj, last := l.evPrefix+nuid.Next(), uint64(0)
				for b.Loop() {
					id := nuid.Next()
					m1, m2 := msg(l.idPrefix+nuid.Next(), claim, 0), msg(subj, event, last)
					m1.Header[hdrBatchID], m1.Header[hdrBatchSeq] = []string{id}, []string{"1"}
					m2.Header[hdrBatchID], m2.Header[hdrBatchSeq], m2.Header[hdrBatchCommit] = []string{id}, []string{"2"}, []string{"1"}
					if err := l.nc.PublishMsg(m1); err != nil {
						b.Fatal(err)
					}
					last = request(b, m2)
				}
			})
		})
	}
}
