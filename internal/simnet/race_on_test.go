//go:build race

package simnet

// raceEnabled: the race detector slows a thousand-node run tenfold; such
// runs are left to the plain `go test` step of CI.
const raceEnabled = true
