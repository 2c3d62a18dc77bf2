package main

// The in-cluster guard of a dev session:
//
//	kubeloop-agent guard --lease NAME --project P [--duration S]   (in its pod's namespace)
//
// runs as a pod of its own while `kubeloop dev` has changed workloads (the supervisor it
// wraps the app in). kubeloop renews a Lease every few seconds. If the renewals stop for
// the lease's duration (kubeloop was killed, the laptop sleeps or lost the network), the
// guard puts every workload of the project back as recorded on it, deletes the lease and
// exits; the pod, owned by the lease, goes with it. When kubeloop stops cleanly it restores
// the workloads itself and deletes the lease, and the guard exits too.
//
// Time is the guard's own: a renewal is a change of the lease's renewTime seen here, so
// the developer's clock does not matter.

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

const (
	saDir          = "/var/run/secrets/kubernetes.io/serviceaccount"
	originalAnno   = "kubeloop.dev/original-template"
	projectLabel   = "kubeloop.dev/project"
	guardInterval  = 2 * time.Second
	defaultTimeout = 20 * time.Second
)

type apiClient struct {
	base   string
	token  string
	client *http.Client
}

func inClusterAPI() (*apiClient, error) {
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return nil, fmt.Errorf("not running in a pod (no KUBERNETES_SERVICE_HOST)")
	}
	token, err := os.ReadFile(saDir + "/token")
	if err != nil {
		return nil, err
	}
	ca, err := os.ReadFile(saDir + "/ca.crt")
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	transport := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	return &apiClient{
		base:   "https://" + net.JoinHostPort(host, port),
		token:  strings.TrimSpace(string(token)),
		client: &http.Client{Transport: transport, Timeout: 10 * time.Second},
	}, nil
}

func (a *apiClient) call(method, path, contentType string, body []byte) (int, []byte, error) {
	request, err := http.NewRequest(method, a.base+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	request.Header.Set("Authorization", "Bearer "+a.token)
	if contentType != "" {
		request.Header.Set("Content-Type", contentType)
	}
	response, err := a.client.Do(request)
	if err != nil {
		return 0, nil, err
	}
	defer response.Body.Close()
	data, err := io.ReadAll(io.LimitReader(response.Body, 64<<20))
	return response.StatusCode, data, err
}

type guardArgs struct {
	namespace, lease, project string
	workload                  string // plural/name: one workload (a bridge's swap), not a project
	duration                  time.Duration
}

func parseGuard(args []string) guardArgs {
	parsed := guardArgs{duration: defaultTimeout}
	for i := 0; i+1 < len(args); i += 2 {
		switch args[i] {
		case "--namespace":
			parsed.namespace = args[i+1]
		case "--lease":
			parsed.lease = args[i+1]
		case "--project":
			parsed.project = args[i+1]
		case "--workload":
			parsed.workload = args[i+1]
		case "--duration":
			if d, err := time.ParseDuration(args[i+1]); err == nil {
				parsed.duration = d
			}
		}
	}
	return parsed
}

func guardCommand(args []string) {
	g := parseGuard(args)
	if namespace, err := os.ReadFile(saDir + "/namespace"); err == nil && g.namespace == "" {
		g.namespace = strings.TrimSpace(string(namespace))
	}
	if g.namespace == "" || g.lease == "" || (g.project == "") == (g.workload == "") {
		fail("usage: guard --lease NAME (--project P | --workload PLURAL/NAME) [--duration 20s] [--namespace NS]")
	}
	api, err := inClusterAPI()
	if err != nil {
		fail("%v", err)
	}
	leasePath := fmt.Sprintf("/apis/coordination.k8s.io/v1/namespaces/%s/leases/%s", g.namespace, g.lease)
	lastRenewal, lastSeen := "", time.Now()
	for {
		status, body, err := api.call("GET", leasePath, "", nil)
		switch {
		case err != nil:
			fmt.Fprintf(os.Stderr, "guard: %v\n", err) // the API server may restart: go on
		case status == http.StatusNotFound:
			fmt.Println("guard: the session ended cleanly")
			return
		case status == http.StatusOK:
			var lease struct {
				Spec struct {
					RenewTime string `json:"renewTime"`
				} `json:"spec"`
			}
			json.Unmarshal(body, &lease)
			if lease.Spec.RenewTime != lastRenewal {
				lastRenewal, lastSeen = lease.Spec.RenewTime, time.Now()
			} else if time.Since(lastSeen) > g.duration {
				fmt.Printf("guard: no renewal for %s: putting the workloads back\n", g.duration)
				restored := false
				if g.workload != "" {
					restored = restoreWorkload(api, g.namespace, g.workload)
				} else {
					restored = restoreProject(api, g.namespace, g.project)
				}
				if restored {
					api.call("DELETE", leasePath, "", nil)
					return
				}
			}
		}
		time.Sleep(guardInterval)
	}
}

// restoreProject puts back every workload of the project that carries its original
// template; true when all went well.
func restoreProject(api *apiClient, namespace, project string) bool {
	ok := true
	selector := url.QueryEscape(projectLabel + "=" + project)
	for _, plural := range []string{"deployments", "statefulsets", "daemonsets"} {
		base := fmt.Sprintf("/apis/apps/v1/namespaces/%s/%s", namespace, plural)
		status, body, err := api.call("GET", base+"?labelSelector="+selector, "", nil)
		if err != nil || status != http.StatusOK {
			fmt.Fprintf(os.Stderr, "guard: list %s: %v %d\n", plural, err, status)
			ok = false
			continue
		}
		var list struct {
			Items []struct {
				Metadata struct {
					Name            string            `json:"name"`
					Annotations     map[string]string `json:"annotations"`
					OwnerReferences []any             `json:"ownerReferences"`
				} `json:"metadata"`
			} `json:"items"`
		}
		json.Unmarshal(body, &list)
		for _, item := range list.Items {
			original, wrapped := item.Metadata.Annotations[originalAnno]
			if wrapped && len(item.Metadata.OwnerReferences) == 0 {
				ok = restoreTemplate(api, base, plural, item.Metadata.Name, original) && ok
			}
		}
	}
	return ok
}

// restoreWorkload puts back the one workload a bridge swapped (plural/name).
func restoreWorkload(api *apiClient, namespace, workload string) bool {
	plural, name, _ := strings.Cut(workload, "/")
	base := fmt.Sprintf("/apis/apps/v1/namespaces/%s/%s", namespace, plural)
	status, body, err := api.call("GET", base+"/"+name, "", nil)
	if status == http.StatusNotFound {
		return true // deleted meanwhile: nothing to put back
	}
	if err != nil || status != http.StatusOK {
		fmt.Fprintf(os.Stderr, "guard: get %s: %v %d\n", workload, err, status)
		return false
	}
	var item struct {
		Metadata struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"metadata"`
	}
	json.Unmarshal(body, &item)
	original, changed := item.Metadata.Annotations[originalAnno]
	return !changed || restoreTemplate(api, base, plural, name, original)
}

func restoreTemplate(api *apiClient, base, plural, name, original string) bool {
	patch := fmt.Sprintf(`[{"op":"replace","path":"/spec/template","value":%s},`+
		`{"op":"remove","path":"/metadata/annotations/%s"}]`,
		original, strings.ReplaceAll(originalAnno, "/", "~1"))
	status, body, err := api.call("PATCH", base+"/"+name+"?fieldManager=kubeloop",
		"application/json-patch+json", []byte(patch))
	if err != nil || status >= 300 {
		fmt.Fprintf(os.Stderr, "guard: restore %s/%s: %v %d %s\n", plural, name, err, status, body)
		return false
	}
	fmt.Printf("guard: restored %s/%s\n", plural, name)
	return true
}
