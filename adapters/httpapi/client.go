package httpapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/kmsbackup/kmsbackup/domain"
)

// Client is a typed client of the API. It is safe for concurrent use.
type Client struct {
	Base  string // e.g. http://127.0.0.1:8080
	Token string
	HTTP  *http.Client
}

// APIError is an error response. It unwraps to the domain sentinel its code
// names, so callers can use errors.Is as with local errors.
type APIError struct {
	Status int
	ErrorDetail
}

func (e *APIError) Error() string {
	if e.Hint != "" {
		return e.Message + " (" + e.Hint + ")"
	}
	return e.Message
}

// Unwrap returns the sentinel of the error code.
func (e *APIError) Unwrap() error {
	for k, c := range errorCodes {
		if c.code == e.Code {
			return k
		}
	}
	return nil
}

func (c *Client) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return http.DefaultClient
}

func (c *Client) request(ctx context.Context, method, path string, query url.Values, body any) (*http.Response, error) {
	var rd io.Reader
	hdr := http.Header{}
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encode request: %w", err)
		}
		rd = bytes.NewReader(b)
		hdr.Set("Content-Type", "application/json")
	}
	return c.send(ctx, method, path, query, rd, hdr)
}

// send makes a request with a raw body and extra headers; a response of 300
// or more is returned as an *APIError.
func (c *Client) send(ctx context.Context, method, path string, query url.Values, rd io.Reader, hdr http.Header) (*http.Response, error) {
	u := strings.TrimRight(c.Base, "/") + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, domain.Invalid("request", "bad server address %q: %v", c.Base, err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, domain.Errorf(domain.ErrUnavailable, method+" "+path, "", "is the server running? check --addr or KMSBACKUP_ADDR",
			"cannot reach %s", c.Base)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		var eb ErrorBody
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(b, &eb) != nil || eb.Error.Code == "" {
			return nil, &APIError{Status: resp.StatusCode, ErrorDetail: ErrorDetail{Code: "internal",
				Message: fmt.Sprintf("%s %s: unexpected response %s", method, path, resp.Status)}}
		}
		return nil, &APIError{Status: resp.StatusCode, ErrorDetail: eb.Error}
	}
	return resp, nil
}

func do[T any](ctx context.Context, c *Client, method, path string, query url.Values, body any) (T, error) {
	var out T
	resp, err := c.request(ctx, method, path, query, body)
	if err != nil {
		return out, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNoContent {
		return out, nil
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return out, fmt.Errorf("%s %s: decode response: %w", method, path, err)
	}
	return out, nil
}

func pageQuery(size int, token string) url.Values {
	q := url.Values{}
	if size > 0 {
		q.Set("page_size", strconv.Itoa(size))
	}
	if token != "" {
		q.Set("page_token", token)
	}
	return q
}

func regionQuery(region string) url.Values {
	q := url.Values{}
	if region != "" {
		q.Set("region", region)
	}
	return q
}

// WhoAmI tells who the token belongs to.
func (c *Client) WhoAmI(ctx context.Context) (WhoAmI, error) {
	return do[WhoAmI](ctx, c, "GET", "/v1/whoami", nil, nil)
}

// CreateAccount creates an account (admin token); the token is in the result.
func (c *Client) CreateAccount(ctx context.Context, name string) (Account, error) {
	return do[Account](ctx, c, "POST", "/v1/accounts", nil, CreateAccountRequest{Name: name})
}

// ReplaceAccountToken gives an account a new token (admin token); the new
// token is in the result, the old one stops working.
func (c *Client) ReplaceAccountToken(ctx context.Context, id string) (Account, error) {
	return do[Account](ctx, c, "POST", "/v1/accounts/"+url.PathEscape(id)+"/token", nil, nil)
}

// ListAccounts lists accounts (admin token).
func (c *Client) ListAccounts(ctx context.Context) (List[Account], error) {
	return do[List[Account]](ctx, c, "GET", "/v1/accounts", nil, nil)
}

// CreateInstance creates a KMS instance.
func (c *Client) CreateInstance(ctx context.Context, r CreateInstanceRequest) (Instance, error) {
	return do[Instance](ctx, c, "POST", "/v1/kms/instances", nil, r)
}

// ListInstances lists KMS instances.
func (c *Client) ListInstances(ctx context.Context, pageSize int, pageToken string) (List[Instance], error) {
	return do[List[Instance]](ctx, c, "GET", "/v1/kms/instances", pageQuery(pageSize, pageToken), nil)
}

// GetInstance shows a KMS instance.
func (c *Client) GetInstance(ctx context.Context, id string) (Instance, error) {
	return do[Instance](ctx, c, "GET", "/v1/kms/instances/"+url.PathEscape(id), nil, nil)
}

// ReleaseInstance releases a KMS instance.
func (c *Client) ReleaseInstance(ctx context.Context, id string) (Instance, error) {
	return do[Instance](ctx, c, "POST", "/v1/kms/instances/"+url.PathEscape(id)+"/release", nil, nil)
}

// CreateKey creates a key.
func (c *Client) CreateKey(ctx context.Context, r CreateKeyRequest) (Key, error) {
	return do[Key](ctx, c, "POST", "/v1/kms/keys", nil, r)
}

// ListKeys lists an instance's keys.
func (c *Client) ListKeys(ctx context.Context, instance string, pageSize int, pageToken string) (List[Key], error) {
	q := pageQuery(pageSize, pageToken)
	q.Set("instance", instance)
	return do[List[Key]](ctx, c, "GET", "/v1/kms/keys", q, nil)
}

// GetKey shows a key.
func (c *Client) GetKey(ctx context.Context, id, region string) (Key, error) {
	return do[Key](ctx, c, "GET", "/v1/kms/keys/"+url.PathEscape(id), regionQuery(region), nil)
}

// RotateKey rotates a key.
func (c *Client) RotateKey(ctx context.Context, id, region string) (Key, error) {
	return do[Key](ctx, c, "POST", "/v1/kms/keys/"+url.PathEscape(id)+"/rotate", regionQuery(region), nil)
}

// DeleteKey deletes a key.
func (c *Client) DeleteKey(ctx context.Context, id, region string) error {
	_, err := do[struct{}](ctx, c, "DELETE", "/v1/kms/keys/"+url.PathEscape(id), regionQuery(region), nil)
	return err
}

// Encrypt encrypts under a key.
func (c *Client) Encrypt(ctx context.Context, r EncryptRequest) (EncryptResponse, error) {
	return do[EncryptResponse](ctx, c, "POST", "/v1/kms/encrypt", nil, r)
}

// Decrypt decrypts a ciphertext.
func (c *Client) Decrypt(ctx context.Context, r DecryptRequest) (DecryptResponse, error) {
	return do[DecryptResponse](ctx, c, "POST", "/v1/kms/decrypt", nil, r)
}

// CreateSecret creates a secret.
func (c *Client) CreateSecret(ctx context.Context, r CreateSecretRequest) (Secret, error) {
	return do[Secret](ctx, c, "POST", "/v1/kms/secrets", nil, r)
}

// ListSecrets lists an instance's secrets.
func (c *Client) ListSecrets(ctx context.Context, instance string, pageSize int, pageToken string) (List[Secret], error) {
	q := pageQuery(pageSize, pageToken)
	q.Set("instance", instance)
	return do[List[Secret]](ctx, c, "GET", "/v1/kms/secrets", q, nil)
}

// GetSecret shows a secret's metadata.
func (c *Client) GetSecret(ctx context.Context, name, region string) (Secret, error) {
	return do[Secret](ctx, c, "GET", "/v1/kms/secrets/"+url.PathEscape(name), regionQuery(region), nil)
}

// GetSecretValue returns a secret's value (version 0: the current one).
func (c *Client) GetSecretValue(ctx context.Context, name, region string, version int) (SecretValue, error) {
	q := regionQuery(region)
	if version > 0 {
		q.Set("version", strconv.Itoa(version))
	}
	return do[SecretValue](ctx, c, "GET", "/v1/kms/secrets/"+url.PathEscape(name)+"/value", q, nil)
}

// RotateSecret puts a new value in a secret.
func (c *Client) RotateSecret(ctx context.Context, name string, r RotateSecretRequest) (Secret, error) {
	return do[Secret](ctx, c, "POST", "/v1/kms/secrets/"+url.PathEscape(name)+"/rotate", nil, r)
}

// DeleteSecret deletes a secret.
func (c *Client) DeleteSecret(ctx context.Context, name, region string) error {
	_, err := do[struct{}](ctx, c, "DELETE", "/v1/kms/secrets/"+url.PathEscape(name), regionQuery(region), nil)
	return err
}

func backupPath(id string) string { return "/v1/backup-instances/" + url.PathEscape(id) }

// ListBackupInstances lists backup instances and uploads; released ones
// only when all is set.
func (c *Client) ListBackupInstances(ctx context.Context, all bool, pageSize int, pageToken string) (List[BackupInstance], error) {
	q := pageQuery(pageSize, pageToken)
	if all {
		q.Set("all", "true")
	}
	return do[List[BackupInstance]](ctx, c, "GET", "/v1/backup-instances", q, nil)
}

// CreateBackupInstance creates a provisioned backup instance.
func (c *Client) CreateBackupInstance(ctx context.Context, r CreateBackupInstanceRequest) (BackupInstance, error) {
	return do[BackupInstance](ctx, c, "POST", "/v1/backup-instances", nil, r)
}

// GetBackupInstance shows a backup instance.
func (c *Client) GetBackupInstance(ctx context.Context, id string) (BackupInstance, error) {
	return do[BackupInstance](ctx, c, "GET", backupPath(id), nil, nil)
}

// EnableBackupInstance binds a backup instance to a KMS instance and takes
// the first full backup.
func (c *Client) EnableBackupInstance(ctx context.Context, id string, r EnableBackupInstanceRequest) (BackupInstance, error) {
	return do[BackupInstance](ctx, c, "POST", backupPath(id)+"/enable", nil, r)
}

// ExtendViewableDays raises a backup instance's viewable days.
func (c *Client) ExtendViewableDays(ctx context.Context, id string, viewableDays int) (BackupInstance, error) {
	return do[BackupInstance](ctx, c, "POST", backupPath(id)+"/extend", nil, ExtendViewableDaysRequest{ViewableDays: viewableDays})
}

// RenewBackupInstance extends a backup instance's term.
func (c *Client) RenewBackupInstance(ctx context.Context, id, term string) (BackupInstance, error) {
	return do[BackupInstance](ctx, c, "POST", backupPath(id)+"/renew", nil, RenewBackupInstanceRequest{Term: term})
}

// ResetBackupInstance destroys a backup instance's data and unbinds it;
// confirm must be true (the server refuses otherwise).
func (c *Client) ResetBackupInstance(ctx context.Context, id string, confirm bool) (BackupInstance, error) {
	return do[BackupInstance](ctx, c, "POST", backupPath(id)+"/reset", nil, ResetBackupInstanceRequest{Confirm: confirm})
}

// ListDayData lists one tab (see DataTabs) of a viewable day's data.
func (c *Client) ListDayData(ctx context.Context, id, day, tab string, pageSize int, pageToken string) (List[DataItem], error) {
	q := pageQuery(pageSize, pageToken)
	q.Set("day", day)
	q.Set("tab", tab)
	return do[List[DataItem]](ctx, c, "GET", backupPath(id)+"/data", q, nil)
}

// ListDayCheckpoints lists the checkpoints of a viewable day (day may be
// empty for an upload), oldest first.
func (c *Client) ListDayCheckpoints(ctx context.Context, id, day string) (List[Checkpoint], error) {
	q := url.Values{}
	if day != "" {
		q.Set("day", day)
	}
	return do[List[Checkpoint]](ctx, c, "GET", backupPath(id)+"/checkpoints", q, nil)
}

// DiffDays lists the changes between the ends of two viewable days.
func (c *Client) DiffDays(ctx context.Context, id, from, to string) (List[DiffItem], error) {
	q := url.Values{}
	q.Set("from", from)
	q.Set("to", to)
	return do[List[DiffItem]](ctx, c, "GET", backupPath(id)+"/diff", q, nil)
}

// VerifyBackup verifies a backup instance's data; findings are in the
// report, not an error.
func (c *Client) VerifyBackup(ctx context.Context, id string) (VerifyReport, error) {
	return do[VerifyReport](ctx, c, "POST", backupPath(id)+"/verify", nil, nil)
}

// Restore plans a restore and, unless r.DryRun, applies it when the plan
// has no finding. A plan with findings is a result (Applied false), not an
// error; so is a validation finding after an apply.
func (c *Client) Restore(ctx context.Context, r RestoreRequest) (RestoreResult, error) {
	return do[RestoreResult](ctx, c, "POST", "/v1/restores", nil, r)
}

// RestoreWithProgress is Restore, asking for the answer as a stream
// (Accept: application/x-ndjson) and calling progress with every progress
// line; a server that answers with plain JSON gives no progress.
func (c *Client) RestoreWithProgress(ctx context.Context, r RestoreRequest, progress func(RestoreProgress)) (RestoreResult, error) {
	const op = "POST /v1/restores"
	b, err := json.Marshal(r)
	if err != nil {
		return RestoreResult{}, fmt.Errorf("encode request: %w", err)
	}
	hdr := http.Header{}
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Accept", "application/x-ndjson, application/json;q=0.5")
	resp, err := c.send(ctx, "POST", "/v1/restores", nil, bytes.NewReader(b), hdr)
	if err != nil {
		return RestoreResult{}, err
	}
	defer resp.Body.Close()
	var out RestoreResult
	if ct, _, _ := strings.Cut(resp.Header.Get("Content-Type"), ";"); ct != "application/x-ndjson" {
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			return out, fmt.Errorf("%s: decode response: %w", op, err)
		}
		return out, nil
	}
	dec := json.NewDecoder(resp.Body)
	for {
		var l RestoreStreamLine
		if err := dec.Decode(&l); err != nil {
			if ctx.Err() != nil {
				return out, ctx.Err()
			}
			return out, domain.Errorf(domain.ErrUnavailable, op, "", "retry: a restore is safe to repeat",
				"the answer ended before the result: %v", err)
		}
		switch {
		case l.Progress != nil:
			if progress != nil {
				progress(*l.Progress)
			}
		case l.Error != nil:
			return out, &APIError{Status: statusOf(l.Error.Code), ErrorDetail: *l.Error}
		case l.Result != nil:
			return *l.Result, nil
		}
	}
}

// Replay returns the state of a backup instance at the end of a viewable
// day, or at the last checkpoint at or before at (RFC 3339); pass either or
// both (at within day).
func (c *Client) Replay(ctx context.Context, id, day, at string) (ReplayState, error) {
	q := url.Values{}
	if day != "" {
		q.Set("day", day)
	}
	if at != "" {
		q.Set("at", at)
	}
	return do[ReplayState](ctx, c, "GET", backupPath(id)+"/replay", q, nil)
}

// ListAudit lists the account's audit records in log order: all, or
// (backup not empty) those about one backup instance, at or after since
// (zero: all).
func (c *Client) ListAudit(ctx context.Context, backup string, since time.Time, pageSize int, pageToken string) (List[AuditRecord], error) {
	q := pageQuery(pageSize, pageToken)
	if backup != "" {
		q.Set("backup", backup)
	}
	if !since.IsZero() {
		q.Set("since", since.UTC().Format(time.RFC3339Nano))
	}
	return do[List[AuditRecord]](ctx, c, "GET", "/v1/audit", q, nil)
}

// DevClock shows the dev clock (--dev servers only).
func (c *Client) DevClock(ctx context.Context) (DevClockView, error) {
	return do[DevClockView](ctx, c, "GET", "/v1/dev/clock", nil, nil)
}

// AdvanceClock moves a manual dev clock forward by duration (see
// domain.ParseClockAdvance), doing the scheduled work on the way.
func (c *Client) AdvanceClock(ctx context.Context, duration string) (AdvanceClockResponse, error) {
	return do[AdvanceClockResponse](ctx, c, "POST", "/v1/dev/clock/advance", nil, AdvanceClockRequest{Duration: duration})
}

// DevScrub runs a background verification of every backup instance now
// (--dev servers only) and returns what it did.
func (c *Client) DevScrub(ctx context.Context) (ScrubRunView, error) {
	return do[ScrubRunView](ctx, c, "POST", "/v1/dev/scrub", nil, nil)
}

// TailEvents streams public events (one JSON document each) after position
// from, calling fn for each until ctx is done or fn fails.
func (c *Client) TailEvents(ctx context.Context, from uint64, fn func(json.RawMessage) error) error {
	q := url.Values{}
	q.Set("from", strconv.FormatUint(from, 10))
	resp, err := c.request(ctx, "GET", "/v1/events", q, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 8<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue // keep-alive
		}
		if err := fn(json.RawMessage(bytes.Clone(line))); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil && !errors.Is(err, context.Canceled) {
		return domain.Errorf(domain.ErrUnavailable, "tail events", "", "retry with --from the last position seen", "stream ended: %v", err)
	}
	return ctx.Err()
}

// DownloadResult is what a download returns beside the file: the data key,
// which the server does not keep, and the file's ID.
type DownloadResult struct {
	FileID  string
	DataKey string
	Bytes   int64
}

// Download writes the file of a viewable day to w (day may be empty for an
// upload). A download cut short is an error: the file is then incomplete.
func (c *Client) Download(ctx context.Context, id, day string, w io.Writer) (DownloadResult, error) {
	resp, err := c.request(ctx, "POST", backupPath(id)+"/download", nil, DownloadRequest{Day: day})
	if err != nil {
		return DownloadResult{}, err
	}
	defer resp.Body.Close()
	res := DownloadResult{FileID: resp.Header.Get(HeaderFileID), DataKey: resp.Header.Get(HeaderDataKey)}
	if res.DataKey == "" {
		return DownloadResult{}, fmt.Errorf("download %s: the response carries no data key", id)
	}
	n, err := io.Copy(w, resp.Body)
	res.Bytes = n
	if err != nil {
		return res, domain.Errorf(domain.ErrUnavailable, "download", id, "download the day again",
			"the download broke off after %d bytes: %v", n, err)
	}
	return res, nil
}

// Upload sends a backup data file with its data key under a name.
func (c *Client) Upload(ctx context.Context, name, dataKey string, file io.Reader) (BackupInstance, error) {
	q := url.Values{}
	q.Set("name", name)
	hdr := http.Header{}
	hdr.Set("Content-Type", "application/octet-stream")
	hdr.Set(HeaderDataKey, dataKey)
	resp, err := c.send(ctx, "POST", "/v1/uploads", q, file, hdr)
	if err != nil {
		return BackupInstance{}, err
	}
	defer resp.Body.Close()
	var out BackupInstance
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return out, fmt.Errorf("upload: decode response: %w", err)
	}
	return out, nil
}

// ListUploads lists the account's uploads.
func (c *Client) ListUploads(ctx context.Context, pageSize int, pageToken string) (List[BackupInstance], error) {
	return do[List[BackupInstance]](ctx, c, "GET", "/v1/uploads", pageQuery(pageSize, pageToken), nil)
}

// DeleteUpload deletes an upload and its data.
func (c *Client) DeleteUpload(ctx context.Context, id string) error {
	_, err := do[struct{}](ctx, c, "DELETE", "/v1/uploads/"+url.PathEscape(id), nil, nil)
	return err
}
