// Package faults is gatewayd's fault-injection suite: the real gatewayd
// binary against real mosquitto processes, with the broker terminated,
// killed, frozen or absent, gatewayd itself killed mid-outage, its buffer
// overflowing and its store corrupt. A subscriber with a persistent session
// checks that no seq number goes missing.
//
// The tests need mosquitto and take a minute or two, so they are behind the
// build tag "faults" and plain `go test ./...` skips them:
//
//	go test -count=1 -tags faults -v -timeout 12m ./test/faults/
//
// With GATEWAYD_FAULTS_REPORT=docs/FAULTS.md (relative to the module root)
// the run writes its table of numbers into that file, between the markers
// that docs/FAULTS.md holds.
package faults
