package main

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// A socket-server stand-in that answers the given statuses in turn (then the last one again).
func fakeAPI(t *testing.T, statuses ...int) (*Pusher, *int32) {
	t.Helper()
	var calls int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := int(atomic.AddInt32(&calls, 1))
		if r.URL.Path != "/api/push" || r.Header.Get("authorization") != "Bearer key" {
			t.Errorf("unexpected request %s %s", r.URL.Path, r.Header.Get("authorization"))
		}
		status := statuses[len(statuses)-1]
		if n <= len(statuses) {
			status = statuses[n-1]
		}
		w.Header().Set("content-type", "application/json")
		if status == http.StatusAccepted {
			w.WriteHeader(status)
			_, _ = w.Write([]byte(`{"id":"p1","target":"room","event":"e"}`))
			return
		}
		if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
			w.Header().Set("retry-after", "0")
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte(`{"error":{"code":"X","message":"x"}}`))
	}))
	t.Cleanup(srv.Close)
	p := NewPusher(srv.URL, "key")
	p.backoff = time.Millisecond
	return p, &calls
}

func TestPushRetriesWhatIsRetryable(t *testing.T) {
	p, calls := fakeAPI(t, 503, 429, 202)
	out, err := p.Push(context.Background(), map[string]any{"room": "r", "event": "e", "payload": 1})
	if err != nil || out["id"] != "p1" {
		t.Fatalf("got %v, %v", out, err)
	}
	if *calls != 3 {
		t.Fatalf("%d requests, want 3", *calls)
	}
}

func TestPushGivesUpAfterItsAttempts(t *testing.T) {
	p, calls := fakeAPI(t, 503)
	_, err := p.Push(context.Background(), map[string]any{"room": "r", "event": "e", "payload": 1})
	var refused *PushError
	if !errors.As(err, &refused) || !refused.Retryable() || refused.Status != 503 {
		t.Fatalf("got %v", err)
	}
	if *calls != 3 {
		t.Fatalf("%d requests, want 3", *calls)
	}
}

func TestPushDoesNotRetryA4xx(t *testing.T) {
	for _, status := range []int{400, 401, 409, 413} {
		p, calls := fakeAPI(t, status, 202)
		_, err := p.Push(context.Background(), map[string]any{"room": "r", "event": "e", "payload": 1})
		var refused *PushError
		if !errors.As(err, &refused) || refused.Retryable() || refused.Status != status {
			t.Fatalf("%d: got %v", status, err)
		}
		if *calls != 1 {
			t.Fatalf("%d: %d requests, want 1", status, *calls)
		}
	}
}

func TestPushStopsAtTheDeadline(t *testing.T) {
	p, calls := fakeAPI(t, 503)
	p.backoff = time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	started := time.Now()
	_, err := p.Push(ctx, map[string]any{"room": "r", "event": "e", "payload": 1})
	if err == nil || time.Since(started) > 500*time.Millisecond {
		t.Fatalf("got %v after %v", err, time.Since(started))
	}
	// The backoff would end after the deadline: no second request.
	if *calls != 1 {
		t.Fatalf("%d requests, want 1", *calls)
	}
}
