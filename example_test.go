package scuttlebutt_test

import (
	"context"
	"fmt"
	"time"

	"github.com/scuttlebutt-go/scuttlebutt"
)

// Two nodes on loopback: the second joins through the first and reads a
// key the first publishes.
func Example() {
	newNode := func(id string) *scuttlebutt.Node {
		cfg := scuttlebutt.DefaultLocalConfig()
		cfg.ID = id
		cfg.BindAddr = "127.0.0.1:0" // any free port
		n, err := scuttlebutt.Create(cfg)
		if err != nil {
			panic(err)
		}
		return n
	}
	a, b := newNode("a"), newNode("b")
	defer b.Close()

	if err := a.UpdateLocal("rpcAddr", "10.0.0.1:5112"); err != nil {
		panic(err)
	}
	if err := b.Seed([]string{a.Addr()}); err != nil {
		panic(err)
	}
	// The join pulled a's state; later changes arrive by gossip.
	v, _ := b.Lookup("a", "rpcAddr")
	fmt.Println("b sees a's rpcAddr:", v)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.Leave(ctx); err != nil {
		panic(err)
	}
	for {
		if info, _ := b.NodeInfo("a"); info.Status == scuttlebutt.StatusLeft {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Println("b sees a as left")
	// Output:
	// b sees a's rpcAddr: 10.0.0.1:5112
	// b sees a as left
}
