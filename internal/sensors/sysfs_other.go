//go:build !unix

package sensors

import (
	"io"
	"os"
)

// readAttrFlags reads one attribute; sysfs exists on Linux only, so this
// serves the fixture trees of the tests on other systems.
func readAttrFlags(path string, flags int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxAttrSize+1))
}
