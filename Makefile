# gatewayd's build entry points. Needs Go (1.26 or newer) and make; git for
# the version (or VERSION=1.2.0).
#
#   make dist      dist/: tarball, .deb and .rpm for amd64, arm64, armv7 and
#                  armv6, and checksums.txt (tools/dist, with nfpm)
#   make test      go test -race ./... (and the tests of tools/dist)
#   make clean

GO      ?= go
# VERSION=1.2.0 stamps that version instead of git describe's; TARGETS=amd64,armv6
# builds a subset.
VERSION ?=
TARGETS ?=

.PHONY: dist test clean

dist:
	cd tools/dist && $(GO) run . -root ../.. -out dist -version "$(VERSION)" -targets "$(TARGETS)"

test:
	$(GO) test -race ./...
	cd tools/dist && $(GO) test ./...

clean:
	rm -rf dist
