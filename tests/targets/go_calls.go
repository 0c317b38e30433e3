// A Go target of the uprobe tests: after a line on stdin, calls main.handler N times from
// goroutines; handler grows its goroutine's stack (a recursion) and calls main.work, so a
// uretprobe's return address would break Go's stack copy ("unknown caller pc"). Prints
// "handled N" when done.
package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
)

//go:noinline
func work(n int) int {
	time.Sleep(time.Millisecond)
	return n * 7
}

//go:noinline
func deep(n int) int {
	var pad [64]byte
	pad[n%64] = byte(n)
	if n == 0 {
		return int(pad[0])
	}
	return deep(n-1) + int(pad[n%64])
}

//go:noinline
func handler(i int) int {
	return deep(50) + work(i)
}

func main() {
	n, err := strconv.Atoi(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "usage: go_calls N")
		os.Exit(2)
	}
	bufio.NewReader(os.Stdin).ReadString('\n')
	var wg sync.WaitGroup
	var mu sync.Mutex
	sum := 0
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := g; i < n; i += 4 {
				v := handler(i)
				mu.Lock()
				sum += v
				mu.Unlock()
			}
		}(g)
	}
	wg.Wait()
	fmt.Printf("handled %d %d\n", n, sum)
}
