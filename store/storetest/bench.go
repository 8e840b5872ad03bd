package storetest

import (
	"context"
	"os"
	"strconv"
	"testing"

	"github.com/chatd/chat/store"
)

// BenchMessagesEnv names the variable that sets how many messages a search
// benchmark seeds (default 20,000; the figure is 1,000,000).
const BenchMessagesEnv = "CHAT_BENCH_MESSAGES"

// BenchMessages returns the number of messages a search benchmark seeds.
func BenchMessages(tb testing.TB) int {
	tb.Helper()
	v := os.Getenv(BenchMessagesEnv)
	if v == "" {
		return 20000
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		tb.Fatalf("%s=%q is not a positive number", BenchMessagesEnv, v)
	}
	return n
}

// SeedRoom is the direct room, between users x and y, that seeded stores
// put every tenth message in, so that the benchmarked searcher (u1, in no
// room) pays for the permission filter.
const SeedRoom int64 = 2

// SeedContent is the text of seeded message i (1-based), as each store's
// seeding SQL builds it: word<i%1000> term<i*7919%50000> common, plus
// "needle" in every 10007th message. So at 1,000,000 messages "common"
// matches all, "word42" 1,000, "word42 term32598" 20, "needle" 99, "absent"
// none.
const SeedContent = `'word' || (i % 1000) || ' term' || ((i * 7919) % 50000) || ' common'
	|| CASE WHEN i % 10007 = 0 THEN ' needle' ELSE '' END`

// BenchSearch measures SearchMessages on s, which holds messages seeded as
// SeedContent describes: the first page (50) of each query, and the page
// after it, newest first.
func BenchSearch(b *testing.B, s store.Store) {
	ctx := context.Background()
	for _, q := range []string{"common", "word42", "word42 term32598", "needle", "absent"} {
		b.Run(q, func(b *testing.B) {
			first, err := s.SearchMessages(ctx, "u1", q, 0, 50)
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				if _, err := s.SearchMessages(ctx, "u1", q, 0, 50); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(first)), "results")
		})
		b.Run(q+"/page2", func(b *testing.B) {
			first, _ := s.SearchMessages(ctx, "u1", q, 0, 50)
			if len(first) < 50 {
				b.Skip("one page only")
			}
			before := first[len(first)-1].ID
			for b.Loop() {
				if _, err := s.SearchMessages(ctx, "u1", q, before, 50); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
