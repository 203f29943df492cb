package daemon

import (
	"github.com/previewd/previewd/internal/config"
	"github.com/previewd/previewd/internal/runtime/local"
)

// localCaching is runtime.local's caches and outputs for the local
// runtime.
func localCaching(c config.Caching) local.Caching {
	out := local.Caching{Outputs: c.Outputs, MaxAge: c.CacheMaxAge.Duration, MaxBytes: int64(c.CacheMaxBytes)}
	for _, e := range c.Caches {
		out.Caches = append(out.Caches, local.CacheSpec{Path: e.Path, Key: e.Key, Run: e.Run, Share: e.Share})
	}
	return out
}
