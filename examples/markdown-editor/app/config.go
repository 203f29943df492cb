package app

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// bannerFile is read from the working directory when APP_BANNER is not set.
// previewd's demo branches differ only by this file.
const bannerFile = "banner.txt"

// config is everything the app takes from its environment. The variable names
// are the contract previewd gives the apps it deploys.
type config struct {
	Host string // HOST: interface to listen on; empty means all
	Port string // PORT: default 8080

	DatabaseURL    string // DATABASE_URL: postgres://..., postgresql://... or sqlite:/abs/path
	DatabasePath   string // DATABASE_PATH: SQLite file
	DatabaseSchema string // DATABASE_SCHEMA: expected PostgreSQL current_schema()

	PreviewKey        string // PREVIEW_KEY: e.g. "pr-42"
	PreviewURL        string // PREVIEW_URL: public URL of this environment
	PreviewSHA        string // PREVIEW_SHA: commit being previewed
	PreviewBranch     string // PREVIEW_BRANCH
	PreviewNumber     string // PREVIEW_NUMBER: pull request number
	PreviewProduction bool   // PREVIEW_PRODUCTION: this is the production deployment

	Banner   string     // APP_BANNER, else banner.txt, else empty
	LogLevel slog.Level // LOG_LEVEL: debug, info, warn or error
}

// loadConfig reads the configuration through getenv, looking for banner.txt
// in dir.
func loadConfig(getenv func(string) string, dir string) (config, error) {
	c := config{
		Host:              strings.TrimSpace(getenv("HOST")),
		Port:              strings.TrimSpace(getenv("PORT")),
		DatabaseURL:       strings.TrimSpace(getenv("DATABASE_URL")),
		DatabasePath:      strings.TrimSpace(getenv("DATABASE_PATH")),
		DatabaseSchema:    strings.TrimSpace(getenv("DATABASE_SCHEMA")),
		PreviewKey:        strings.TrimSpace(getenv("PREVIEW_KEY")),
		PreviewURL:        strings.TrimSpace(getenv("PREVIEW_URL")),
		PreviewSHA:        strings.TrimSpace(getenv("PREVIEW_SHA")),
		PreviewBranch:     strings.TrimSpace(getenv("PREVIEW_BRANCH")),
		PreviewNumber:     strings.TrimSpace(getenv("PREVIEW_NUMBER")),
		PreviewProduction: parseBool(getenv("PREVIEW_PRODUCTION")),
	}
	if c.Port == "" {
		c.Port = "8080"
	}
	if n, err := strconv.Atoi(c.Port); err != nil || n < 0 || n > 65535 {
		return config{}, fmt.Errorf("invalid PORT %q: want a number between 0 and 65535", c.Port)
	}
	if err := c.LogLevel.UnmarshalText([]byte(cmp.Or(strings.TrimSpace(getenv("LOG_LEVEL")), "info"))); err != nil {
		return config{}, fmt.Errorf("invalid LOG_LEVEL: %w", err)
	}
	banner, err := loadBanner(getenv, dir)
	if err != nil {
		return config{}, err
	}
	c.Banner = banner
	return c, nil
}

// loadBanner returns APP_BANNER if it is non-empty, else the trimmed contents
// of banner.txt in dir if that file exists, else "".
func loadBanner(getenv func(string) string, dir string) (string, error) {
	if b := strings.TrimSpace(getenv("APP_BANNER")); b != "" {
		return b, nil
	}
	data, err := os.ReadFile(filepath.Join(dir, bannerFile))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read banner: %w", err)
	}
	return strings.TrimSpace(string(data)), nil
}

// shortSHA returns the first 7 characters of the previewed commit.
func (c config) shortSHA() string {
	if len(c.PreviewSHA) > 7 {
		return c.PreviewSHA[:7]
	}
	return c.PreviewSHA
}

func parseBool(s string) bool {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "1", "t", "true", "y", "yes", "on":
		return true
	}
	return false
}
