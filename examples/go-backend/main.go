// A minimal Go backend for socket-server, standard library only.
//
// socket-server owns the WebSockets; this program only speaks HTTP:
//
//   - it receives every client event as POST /events (signed JSON),
//     verifies the signature, answers, and the answer becomes the
//     client's ack ({ ok: true, data: <this JSON> });
//   - it pushes back to users and rooms with POST {API}/api/push over one
//     keep-alive http.Client.
//
// Environment:
//
//	LISTEN_ADDR             where to listen (default 127.0.0.1:8080; port 0 picks one)
//	BACKEND_SIGNING_SECRET  the same value socket-server has; unset: no check
//	SOCKET_SERVER_API_URL   socket-server's internal port (default http://127.0.0.1:3001)
//	SOCKET_SERVER_API_KEY   one of socket-server's API_KEYS (needed for pushes)
//
// Run it and socket-server with the same key and secret (docs/http-api.md,
// "Connecting your Go backend"; test/go-backend.test.ts runs those commands):
//
//	SOCKET_SERVER_API_KEY=local-api-key-0123456789 BACKEND_SIGNING_SECRET=local-signing-secret-0123456789 go run .
//	API_KEYS=local-api-key-0123456789 BACKEND_SIGNING_SECRET=local-signing-secret-0123456789 \
//	  BACKEND_URL=http://127.0.0.1:8080 FORWARD_LIFECYCLE=true npm start
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Event is the body socket-server sends for every forwarded client event.
type Event struct {
	ID         string          `json:"id"` // the same on every retry: dedupe on it
	Event      string          `json:"event"`
	Payload    json.RawMessage `json:"payload"`
	UserID     string          `json:"userId"`
	SocketID   string          `json:"socketId"`
	Rooms      []string        `json:"rooms"`
	ReceivedAt string          `json:"receivedAt"`
}

const maxBody = 1 << 20

func main() {
	addr := env("LISTEN_ADDR", "127.0.0.1:8080")
	secret := os.Getenv("BACKEND_SIGNING_SECRET")
	pusher := NewPusher(env("SOCKET_SERVER_API_URL", "http://127.0.0.1:3001"), os.Getenv("SOCKET_SERVER_API_KEY"))
	app := &App{secret: []byte(secret), pusher: pusher, seen: NewDedupe(10 * time.Minute)}
	if secret == "" {
		log.Print("BACKEND_SIGNING_SECRET is not set: requests are not verified")
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/events", app.Events)
	mux.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		// socket-server keeps its connections to us open; let them idle.
		IdleTimeout: 2 * time.Minute,
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("listening on %s", ln.Addr())

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}

// App answers forwarded events.
type App struct {
	secret []byte
	pusher *Pusher
	seen   *Dedupe
}

// Events is POST /events. Status codes matter to socket-server:
// 2xx with JSON → the client's ack data; 4xx → BACKEND_REJECTED (never
// retried); 5xx → retried with the same id, then BACKEND_UNAVAILABLE.
func (a *App) Events(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "POST only"})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": "body too large"})
		return
	}
	if len(a.secret) > 0 && !VerifySignature(a.secret, r.Header.Get("x-signature"), body, time.Now(), 5*time.Minute) {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "bad signature"})
		return
	}
	var ev Event
	if err := json.Unmarshal(body, &ev); err != nil || ev.ID == "" || ev.Event == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "not a socket-server event"})
		return
	}
	// socket-server retries with the same id when an answer is lost or late:
	// each id is handled once, and a retry gets the first answer.
	res, err := a.seen.Do(r.Context(), ev.ID, func() reply {
		status, answer := a.handle(r.Context(), ev)
		if answer == nil {
			return reply{status: status}
		}
		out, _ := json.Marshal(answer)
		return reply{status: status, body: out}
	})
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "still working on it"})
		return
	}
	writeRaw(w, res.status, res.body)
}

func (a *App) handle(ctx context.Context, ev Event) (int, any) {
	switch ev.Event {
	case "connect":
		// FORWARD_LIFECYCLE=true: a user registered. Greet them on their own socket(s).
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			if _, err := a.pusher.Push(ctx, map[string]any{
				"userId": ev.UserID, "event": "welcome", "payload": map[string]any{"userId": ev.UserID},
			}); err != nil {
				log.Printf("welcome push for %s: %v", ev.UserID, err)
			}
		}()
		return http.StatusNoContent, nil
	case "disconnect":
		return http.StatusNoContent, nil
	case "echo":
		return http.StatusOK, map[string]any{"echo": ev.Payload, "userId": ev.UserID}
	case "chat:send":
		var p struct {
			Room string `json:"room"`
			Text string `json:"text"`
		}
		if err := json.Unmarshal(ev.Payload, &p); err != nil || p.Room == "" || strings.TrimSpace(p.Text) == "" || len(p.Text) > 2000 {
			return http.StatusBadRequest, map[string]string{"error": "needs { room, text } with 1..2000 characters"}
		}
		if !contains(ev.Rooms, p.Room) {
			return http.StatusForbidden, map[string]string{"error": "join the room first"}
		}
		// Push before answering, so the ack means "delivered to socket-server".
		ctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
		defer cancel()
		res, err := a.pusher.Push(ctx, map[string]any{
			"room":    p.Room,
			"event":   "chat:message",
			"payload": map[string]any{"id": ev.ID, "from": ev.UserID, "room": p.Room, "text": p.Text},
			// The event id as the key: a push retried here, or for a retried event, is delivered once.
			"options": map[string]any{"idempotencyKey": "chat:" + ev.ID},
		})
		if err != nil {
			log.Printf("push to %s: %v", p.Room, err)
			var refused *PushError
			if errors.As(err, &refused) && !refused.Retryable() {
				// A 4xx from socket-server (a wrong API key, a request it cannot
				// take) fails the same way every time. A 4xx answer makes
				// socket-server tell the client at once (BACKEND_REJECTED);
				// a 5xx would be retried and count toward its circuit breaker.
				return http.StatusFailedDependency, map[string]any{"error": "push refused", "status": refused.Status}
			}
			// Worth another try (socket-server busy or restarting, a network
			// error): 503, and socket-server retries the event with the same id.
			return http.StatusServiceUnavailable, map[string]string{"error": "push failed"}
		}
		return http.StatusOK, map[string]any{"accepted": true, "pushId": res["id"]}
	default:
		return http.StatusBadRequest, map[string]string{"error": "unknown event " + ev.Event}
	}
}

// Pusher calls socket-server's POST /api/push with one keep-alive client.
type Pusher struct {
	base     string
	key      string
	client   *http.Client
	attempts int
	backoff  time.Duration
}

// NewPusher makes a client whose idle pool keeps connections to socket-server
// open, so thousands of pushes reuse a few TCP connections.
func NewPusher(base, key string) *Pusher {
	transport := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		MaxIdleConns:        64,
		MaxIdleConnsPerHost: 64, // the default (2) would reopen connections under load
		IdleConnTimeout:     90 * time.Second,
	}
	return &Pusher{
		base:     strings.TrimRight(base, "/"),
		key:      key,
		client:   &http.Client{Transport: transport, Timeout: 5 * time.Second},
		attempts: 3,
		backoff:  100 * time.Millisecond,
	}
}

// PushError is an answer other than 202 from socket-server.
type PushError struct {
	Status     int
	Body       string
	RetryAfter time.Duration // from Retry-After (429, 503); 0 if absent
}

func (e *PushError) Error() string { return fmt.Sprintf("push answered %d: %s", e.Status, e.Body) }

// Retryable: 429 (rate limited) and 5xx (overloaded, shutting down) may pass
// later; any other 4xx is the request's fault (a wrong key, an invalid push)
// and fails the same way every time.
func (e *PushError) Retryable() bool {
	return e.Status == http.StatusTooManyRequests || e.Status >= 500
}

// Push sends one push and returns socket-server's 202 body ({ id, ... }).
// What is retryable (429, 5xx, a network error) is tried again, up to
// p.attempts in all, after Retry-After or a jittered backoff, within ctx;
// a push that may already have gone out is safe to send again only with an
// options.idempotencyKey. Anything else returns at once.
func (p *Pusher) Push(ctx context.Context, push map[string]any) (map[string]any, error) {
	body, err := json.Marshal(push)
	if err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		out, err := p.pushOnce(ctx, body)
		if err == nil {
			return out, nil
		}
		var refused *PushError
		wait := p.backoff << (attempt - 1)
		wait = wait/2 + time.Duration(rand.Int63n(int64(wait)))
		if errors.As(err, &refused) {
			if !refused.Retryable() {
				return nil, err
			}
			if refused.RetryAfter > 0 {
				wait = refused.RetryAfter
			}
		}
		if attempt >= p.attempts || ctx.Err() != nil {
			return nil, err
		}
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < wait {
			return nil, err
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, err
		}
	}
}

func (p *Pusher) pushOnce(ctx context.Context, body []byte) (map[string]any, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.base+"/api/push", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("authorization", "Bearer "+p.key)
	req.Header.Set("content-type", "application/json")
	res, err := p.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	// Read to the end: an unread body closes the connection instead of reusing it.
	data, err := io.ReadAll(io.LimitReader(res.Body, maxBody))
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusAccepted {
		retryAfter, _ := strconv.Atoi(res.Header.Get("retry-after"))
		return nil, &PushError{
			Status:     res.StatusCode,
			Body:       string(bytes.TrimSpace(data)),
			RetryAfter: time.Duration(retryAfter) * time.Second,
		}
	}
	var out map[string]any
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, err
	}
	return out, nil
}

type reply struct {
	status int
	body   []byte
}

// Dedupe runs each event id once and remembers its answer for ttl
// (socket-server retries within seconds). Failed runs (5xx) are forgotten so
// that the next retry runs again.
type Dedupe struct {
	mu  sync.Mutex
	ttl time.Duration
	m   map[string]*dedupeEntry
}

type dedupeEntry struct {
	done chan struct{}
	r    reply
	at   time.Time
}

func NewDedupe(ttl time.Duration) *Dedupe {
	d := &Dedupe{ttl: ttl, m: make(map[string]*dedupeEntry)}
	go func() {
		for range time.Tick(ttl / 2) {
			d.mu.Lock()
			for id, e := range d.m {
				select {
				case <-e.done:
					if time.Since(e.at) > d.ttl {
						delete(d.m, id)
					}
				default: // still running
				}
			}
			d.mu.Unlock()
		}
	}()
	return d
}

// Do returns the answer for id, running fn only if no run is stored or in progress.
func (d *Dedupe) Do(ctx context.Context, id string, fn func() reply) (reply, error) {
	d.mu.Lock()
	if e, ok := d.m[id]; ok {
		d.mu.Unlock()
		select {
		case <-e.done:
			return e.r, nil
		case <-ctx.Done():
			return reply{}, ctx.Err()
		}
	}
	e := &dedupeEntry{done: make(chan struct{})}
	d.m[id] = e
	d.mu.Unlock()
	e.r = fn()
	e.at = time.Now()
	close(e.done)
	if e.r.status >= 500 {
		d.mu.Lock()
		delete(d.m, id)
		d.mu.Unlock()
	}
	return e.r, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	writeRaw(w, status, b)
}

func writeRaw(w http.ResponseWriter, status int, body []byte) {
	if len(body) > 0 {
		w.Header().Set("content-type", "application/json")
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func env(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}
