package mailbox

import (
	"bytes"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkDeliver files 4 KiB messages for one or two users from 1 and 8
// concurrent callers. ns/op is wall time per delivery (throughput);
// ms/deliver is the mean latency one caller sees.
func BenchmarkDeliver(b *testing.B) {
	for _, rcpts := range []int{1, 2} {
		for _, conc := range []int{1, 8} {
			b.Run(fmt.Sprintf("rcpts=%d/conc=%d", rcpts, conc), func(b *testing.B) {
				s := newStore(b)
				var to []string
				for i := 0; i < rcpts; i++ {
					to = append(to, fmt.Sprintf("u%d@example.com", i))
					addUser(b, s, to[i])
				}
				body := msgBody(4096, "bench")
				b.SetBytes(int64(len(body)))
				var next, lat atomic.Int64
				b.ResetTimer()
				var wg sync.WaitGroup
				for g := 0; g < conc; g++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for next.Add(1) <= int64(b.N) {
							t0 := time.Now()
							if _, err := s.Deliver(to, bytes.NewReader(body), time.Now()); err != nil {
								b.Error(err)
								return
							}
							lat.Add(int64(time.Since(t0)))
						}
					}()
				}
				wg.Wait()
				b.ReportMetric(float64(lat.Load())/float64(b.N)/1e6, "ms/deliver")
			})
		}
	}
}
