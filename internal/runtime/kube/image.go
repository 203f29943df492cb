package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/previewd/previewd/internal/env"
)

// imageExists asks the image's registry for its manifest (a HEAD
// request), with the credentials of the pull secrets and of the docker
// config.
func (r *Runtime) imageExists(ctx context.Context, image string) (bool, error) {
	ref, err := name.ParseReference(image)
	if err != nil {
		return false, &env.StepError{Step: "image", Err: fmt.Errorf("%q is not an image reference: %w", image, err)}
	}
	kc, err := r.keychain(ctx)
	if err != nil {
		return false, err
	}
	opts := append([]remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(kc)}, r.o.RemoteOptions...)
	_, err = remote.Head(ref, opts...)
	if err == nil {
		return true, nil
	}
	var te *transport.Error
	if errors.As(err, &te) && te.StatusCode == http.StatusNotFound {
		return false, nil
	}
	return false, err
}

// keychain is the pull secrets' credentials, then the docker config's.
func (r *Runtime) keychain(ctx context.Context) (authn.Keychain, error) {
	dc := dockerConfig{}
	for _, s := range r.o.PullSecrets {
		ns, n, _ := strings.Cut(s, "/")
		sec, err := r.cs.CoreV1().Secrets(ns).Get(ctx, n, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("reading pull secret %s: %w", s, err)
		}
		var cfg struct {
			Auths dockerConfig `json:"auths"`
		}
		switch sec.Type {
		case corev1.SecretTypeDockerConfigJson:
			err = json.Unmarshal(sec.Data[corev1.DockerConfigJsonKey], &cfg)
		case corev1.SecretTypeDockercfg:
			err = json.Unmarshal(sec.Data[corev1.DockerConfigKey], &cfg.Auths)
		default:
			err = fmt.Errorf("type %s; want %s", sec.Type, corev1.SecretTypeDockerConfigJson)
		}
		if err != nil {
			return nil, fmt.Errorf("pull secret %s: %w", s, err)
		}
		for host, a := range cfg.Auths {
			if _, ok := dc[host]; !ok {
				dc[host] = a
			}
		}
	}
	return authn.NewMultiKeychain(dc, authn.DefaultKeychain), nil
}

// dockerConfig is the "auths" of a docker config: registry -> credentials.
type dockerConfig map[string]authn.AuthConfig

// Resolve implements authn.Keychain.
func (dc dockerConfig) Resolve(res authn.Resource) (authn.Authenticator, error) {
	reg := res.RegistryStr()
	keys := []string{reg, "https://" + reg, "http://" + reg, "https://" + reg + "/v1/", "https://" + reg + "/v2/"}
	if reg == name.DefaultRegistry {
		keys = append(keys, "https://index.docker.io/v1/", "docker.io")
	}
	for _, k := range keys {
		if a, ok := dc[k]; ok {
			return authn.FromConfig(a), nil
		}
	}
	return authn.Anonymous, nil
}
