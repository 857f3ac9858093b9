package config

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// MaxFileSize bounds the config file; a larger one is refused rather than
// parsed, since it is surely not a hand-written config.
const MaxFileSize = 1 << 20

// Load reads the config file at path, parses it (Parse) and checks it
// against the system (Probe): what -check and the start of the daemon do.
// The error, if any, is an Errors value listing every problem with its file,
// line and key, or a plain error when the file cannot be read at all.
func Load(path string) (*Config, error) {
	data, err := readLimited(path)
	if err != nil {
		return nil, fmt.Errorf("reading config file %s: %w", path, err)
	}
	cfg, err := Parse(path, data, os.LookupEnv)
	if err != nil {
		return nil, err
	}
	if err := Probe(cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("file is larger than %d bytes", MaxFileSize)
	}
	return data, nil
}

// Parse decodes a config held in memory, applies the defaults, validates it
// and resolves what the daemon reads (see Sensor.Publish). It only computes:
// no listens, no host lookups, no file reads (Probe does those), so that it
// can check the running daemon's own file. name is used in error messages;
// lookupEnv resolves ${NAME}.
func Parse(name string, data []byte, lookupEnv func(string) (string, bool)) (*Config, error) {
	p := &parser{file: name}
	cfg := Default()
	cfg.File = name

	root, err := parseDocument(data)
	if err != nil {
		return nil, Errors{{File: name, Line: yamlErrLine(err), Msg: err.Error()}}
	}
	if root != nil && expandedSize(root, maxNodes) > maxNodes {
		return nil, Errors{{File: name, Msg: fmt.Sprintf("more than %d YAML nodes (aliases included); refusing to expand", maxNodes)}}
	}
	changed := p.checkKeys(root, "")
	changed = p.expandEnv(root, lookupEnv) || changed
	changed = p.scan(root) || changed
	if root != nil {
		text := data
		if changed {
			if text, err = yaml.Marshal(root); err != nil {
				return nil, Errors{{File: name, Msg: fmt.Sprintf("cannot re-encode the expanded config: %v", err)}}
			}
		}
		root = nil // the tree may go before the decoder builds its own
		p.decode(text, cfg)
	}
	if len(p.errs) > 0 {
		return nil, sorted(p.errs)
	}
	if !p.has("sensors") {
		cfg.Sensors = defaultSensors()
	}
	resolve(cfg, p.has)
	v := &validator{file: name, line: p.line, has: p.has}
	v.validate(cfg)
	if len(v.errs) > 0 {
		return nil, sorted(v.errs)
	}
	cfg.probeLines = probeLines(cfg, p.lines)
	return cfg, nil
}

// sorted orders errors by line, keeping the order of those on one line.
func sorted(errs Errors) Errors {
	sort.SliceStable(errs, func(i, j int) bool { return errs[i].Line < errs[j].Line })
	return errs
}

// ReadPassword returns the password to connect with: password, or the
// content of password_file read now (its trailing newline removed), so that
// a rotated password applies at the next connect. The session calls it at
// each connect.
func (b Broker) ReadPassword() (Secret, error) {
	if b.PasswordFile == "" {
		return b.Password, nil
	}
	pw, err := readPasswordFile(b.PasswordFile)
	if err != nil {
		return "", fmt.Errorf("broker.password_file: %w", err)
	}
	return pw, nil
}

func readPasswordFile(path string) (Secret, error) {
	data, err := readLimited(path)
	if err != nil {
		return "", fmt.Errorf("cannot read: %w", unwrapPath(err))
	}
	pw := strings.TrimRight(string(data), "\r\n")
	if pw == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return Secret(pw), nil
}
