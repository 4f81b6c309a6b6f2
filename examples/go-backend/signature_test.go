package main

import (
	"testing"
	"time"
)

// The vector was made by socket-server's signatureHeader (src/worker/forward/signature.ts)
// with the test suite's fixture secret.
const (
	vecSecret = "test-only-backend-signing-secret-0123"
	vecBody   = `{"id":"6f1c0a52-8f0e-4d5e-9a43-6f7d2a1b9c10","event":"echo","payload":{"text":"hi"},"userId":"alice","socketId":"abc","rooms":["user:alice"],"receivedAt":"2024-01-01T00:00:00.000Z"}`
	vecHeader = "t=1700000000,v1=e0d04f3dc2809274e63a4c3c2586f91cb5c3d3ffecfeadfc8e1e0823105dd084"
)

func TestVerifySignature(t *testing.T) {
	at := time.Unix(1700000000, 0)
	tol := 5 * time.Minute
	if !VerifySignature([]byte(vecSecret), vecHeader, []byte(vecBody), at, tol) {
		t.Fatal("valid signature refused")
	}
	if VerifySignature([]byte(vecSecret), vecHeader, []byte(vecBody+" "), at, tol) {
		t.Fatal("tampered body accepted")
	}
	if VerifySignature([]byte("another-secret-0123456789"), vecHeader, []byte(vecBody), at, tol) {
		t.Fatal("wrong secret accepted")
	}
	if VerifySignature([]byte(vecSecret), vecHeader, []byte(vecBody), at.Add(10*time.Minute), tol) {
		t.Fatal("stale timestamp accepted")
	}
	rotated := "t=1700000000,v1=" + "00" + vecHeader[len("t=1700000000,v1=")+2:] + ",v1=" + vecHeader[len("t=1700000000,v1="):]
	if !VerifySignature([]byte(vecSecret), rotated, []byte(vecBody), at, tol) {
		t.Fatal("a second v1 entry was not tried")
	}
	for _, h := range []string{"", "t=1700000000", "v1=abc", "t=x,v1=" + vecHeader[16:]} {
		if VerifySignature([]byte(vecSecret), h, []byte(vecBody), at, tol) {
			t.Fatalf("malformed header %q accepted", h)
		}
	}
}
