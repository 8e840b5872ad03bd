package server_test

import (
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// BenchmarkBcryptHash is the cost of one registration's hash at the seed's
// cost 10, on one core. The 450-user test cannot beat
// 450 × this ÷ cores, so its time is judged against this number:
//
//	go test -run '^$' -bench Bcrypt -benchtime 20x ./server/
//
// Results: section "bcrypt" of bench/RESULTS.md (BENCH=bcrypt bench/run.sh).
func BenchmarkBcryptHash(b *testing.B) {
	for b.Loop() {
		if _, err := bcrypt.GenerateFromPassword([]byte("password"), 10); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBcryptHashParallel hashes on every core at once: the machine's
// registration throughput ceiling.
func BenchmarkBcryptHashParallel(b *testing.B) {
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := bcrypt.GenerateFromPassword([]byte("password"), 10); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
