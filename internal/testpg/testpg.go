// Package testpg gives tests a fresh PostgreSQL database of their own on the
// real server named by TEST_DATABASE_URL.
//
// Without TEST_DATABASE_URL the calling test is skipped with a message, so
// `go test ./...` works on a laptop with no PostgreSQL; under CI=true a
// missing URL fails the test instead, so CI can never pass by skipping.
package testpg

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	_ "github.com/lib/pq" // the driver under test
)

// EnvVar names the variable holding an admin URL of the test server, e.g.
// postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable.
const EnvVar = "TEST_DATABASE_URL"

// AdminURL returns TEST_DATABASE_URL, skipping (or, under CI, failing) the
// test when it is not set.
func AdminURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv(EnvVar)
	if u == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not set; CI must run the PostgreSQL tests against a real server", EnvVar)
		}
		t.Skipf("%s is not set: skipping a test that needs a real PostgreSQL "+
			"(scripts/test.sh sets it)", EnvVar)
	}
	return u
}

// New creates an empty database, drops it when the test ends, and returns
// its URL.
func New(t testing.TB) string {
	t.Helper()
	admin := AdminURL(t)
	db, err := sql.Open("postgres", admin)
	if err != nil {
		t.Fatalf("testpg: %v", err)
	}
	defer db.Close()
	var b [6]byte
	rand.Read(b[:])
	name := "chat_test_" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, `CREATE DATABASE `+name); err != nil {
		t.Fatalf("testpg: create database: %v", err)
	}
	t.Cleanup(func() {
		db, err := sql.Open("postgres", admin)
		if err != nil {
			return
		}
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := db.ExecContext(ctx, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`); err != nil {
			t.Logf("testpg: drop %s: %v", name, err)
		}
	})
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("testpg: %s is not a URL: %v", EnvVar, err)
	}
	u.Path = "/" + name
	return u.String()
}
