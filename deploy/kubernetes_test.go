package deploy_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"meridian/config"
)

const kubeDir = "deploy/kubernetes"

// object is one Kubernetes manifest, as decoded YAML.
type object map[string]any

func (o object) kind() string { s, _ := o["kind"].(string); return s }
func (o object) name() string { s, _ := dig(o, "metadata", "name").(string); return s }

// dig walks nested maps by key; nil when a key is missing.
func dig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			if o, isObj := v.(object); isObj {
				m = o
			} else {
				return nil
			}
		}
		v = m[k]
	}
	return v
}

// list returns v as a list of maps (nil entries for non-maps).
func list(v any) []map[string]any {
	items, _ := v.([]any)
	out := make([]map[string]any, 0, len(items))
	for _, it := range items {
		m, _ := it.(map[string]any)
		out = append(out, m)
	}
	return out
}

func strs(v any) []string {
	items, _ := v.([]any)
	var out []string
	for _, it := range items {
		s, _ := it.(string)
		out = append(out, s)
	}
	return out
}

// manifests reads every YAML document of every file in deploy/kubernetes.
func manifests(t *testing.T) (objs []object, files map[string][]object) {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(root, kubeDir, "*.yaml"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no manifests in %s: %v", kubeDir, err)
	}
	files = map[string][]object{}
	for _, n := range names {
		base := filepath.Base(n)
		dec := yaml.NewDecoder(bytes.NewReader(readFile(t, path.Join(kubeDir, base))))
		for i := 0; ; i++ {
			var m map[string]any // not object: yaml.v3 would decode nested maps as object too
			err := dec.Decode(&m)
			o := object(m)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s/%s: document %d is not YAML: %v", kubeDir, base, i+1, err)
			}
			if o == nil {
				continue
			}
			if o.kind() == "" || o["apiVersion"] == nil || (o.kind() != "Kustomization" && o.name() == "") {
				t.Errorf("%s/%s: document %d lacks apiVersion, kind or metadata.name", kubeDir, base, i+1)
			}
			files[base] = append(files[base], o)
			objs = append(objs, o)
		}
	}
	return objs, files
}

// byKind indexes objects by kind and name.
func byKind(objs []object) map[string]map[string]object {
	out := map[string]map[string]object{}
	for _, o := range objs {
		if out[o.kind()] == nil {
			out[o.kind()] = map[string]object{}
		}
		out[o.kind()][o.name()] = o
	}
	return out
}

// dataKeys are the keys of a ConfigMap's or Secret's data and stringData.
func dataKeys(o object) map[string]string {
	keys := map[string]string{}
	for _, field := range []string{"data", "stringData", "binaryData"} {
		m, _ := o[field].(map[string]any)
		for k, v := range m {
			s, _ := v.(string)
			keys[k] = s
		}
	}
	return keys
}

// mount is one volume mounted into the container: the files it shows.
type mount struct {
	path  string            // mountPath
	kind  string            // ConfigMap or Secret
	name  string            // its name
	files map[string]string // file name in the mount → its content
}

// TestKubernetesManifests checks the manifests for one region: each parses,
// kustomization lists them all, the workload runs meridian as non-root on a
// read-only root with only NET_BIND_SERVICE, probes /healthz and /readyz on
// the admin port, mounts ConfigMaps and Secrets that exist; its ConfigMap's
// configuration passes `meridian check`, every file the configuration
// names is in a mounted ConfigMap or Secret, its listen ports are the
// container's ports, and the Services reach them.
func TestKubernetesManifests(t *testing.T) {
	objs, files := manifests(t)
	kinds := byKind(objs)
	checkKustomization(t, files, kinds)

	var workloads []object
	for _, k := range []string{"StatefulSet", "Deployment"} {
		workloads = append(workloads, slices.Collect(maps.Values(kinds[k]))...)
	}
	if len(workloads) != 1 {
		t.Fatalf("%s: %d StatefulSets and Deployments, want exactly one (one region's node)", kubeDir, len(workloads))
	}
	w := workloads[0]
	pod := dig(w, "spec", "template", "spec")
	containers := list(dig(pod, "containers"))
	if len(containers) != 1 {
		t.Fatalf("%s %s: %d containers, want 1", w.kind(), w.name(), len(containers))
	}
	c := containers[0]
	checkSecurity(t, w, pod, c)
	checkSelectors(t, w, kinds["Service"])
	mounts := checkVolumes(t, w, pod, c, kinds)

	args := strs(c["args"])
	checkServeArgs(t, kubeDir+" "+w.kind()+" args", meridianBinary(t), args)
	i := slices.Index(args, "-config")
	if i < 0 || i+1 >= len(args) {
		t.Fatalf("%s %s args %q: no -config FILE", w.kind(), w.name(), args)
	}
	cfgPath := args[i+1]
	cfg := checkConfig(t, cfgPath, mounts)
	if cfg == nil {
		return
	}
	ports := containerPorts(t, c)
	checkPorts(t, cfg, ports)
	checkProbes(t, cfg, c, ports)
	checkServices(t, kinds["Service"], ports)
	if sn, _ := dig(w, "spec", "serviceName").(string); w.kind() == "StatefulSet" {
		svc, ok := kinds["Service"][sn]
		if !ok {
			t.Errorf("StatefulSet serviceName %q is not a Service of the manifests", sn)
		} else if dig(svc, "spec", "clusterIP") != "None" {
			t.Errorf("Service %s governs the StatefulSet: make it headless (clusterIP: None)", sn)
		}
	}
}

// checkKustomization: every manifest file is a resource, every resource a
// file, and the namespace is created.
func checkKustomization(t *testing.T, files map[string][]object, kinds map[string]map[string]object) {
	t.Helper()
	k := files["kustomization.yaml"]
	if len(k) != 1 || k[0].kind() != "Kustomization" {
		t.Fatalf("%s/kustomization.yaml: want one Kustomization", kubeDir)
	}
	res := strs(k[0]["resources"])
	for f := range files {
		if f != "kustomization.yaml" && !slices.Contains(res, f) {
			t.Errorf("%s/%s is not listed in kustomization.yaml resources %v", kubeDir, f, res)
		}
	}
	for _, r := range res {
		if _, ok := files[r]; !ok {
			t.Errorf("kustomization.yaml lists %s, which is not a manifest of %s", r, kubeDir)
		}
	}
	ns, _ := k[0]["namespace"].(string)
	if _, ok := kinds["Namespace"][ns]; !ok {
		t.Errorf("kustomization.yaml namespace %q is not a Namespace of the manifests", ns)
	}
}

// checkSecurity: non-root, read-only root, capabilities drop ALL and add
// only NET_BIND_SERVICE, no privilege escalation.
func checkSecurity(t *testing.T, w object, pod any, c map[string]any) {
	t.Helper()
	where := w.kind() + " " + w.name()
	psc, csc := dig(pod, "securityContext"), c["securityContext"]
	nonRoot := dig(csc, "runAsNonRoot") == true || (dig(csc, "runAsNonRoot") == nil && dig(psc, "runAsNonRoot") == true)
	if !nonRoot {
		t.Errorf("%s: runAsNonRoot is not true", where)
	}
	for _, sc := range []any{psc, csc} {
		if uid, ok := dig(sc, "runAsUser").(int); ok && uid == 0 {
			t.Errorf("%s: runAsUser 0", where)
		}
	}
	if dig(csc, "readOnlyRootFilesystem") != true {
		t.Errorf("%s: readOnlyRootFilesystem is not true", where)
	}
	if dig(csc, "allowPrivilegeEscalation") != false {
		t.Errorf("%s: allowPrivilegeEscalation is not false", where)
	}
	if d := strs(dig(csc, "capabilities", "drop")); !slices.Equal(d, []string{"ALL"}) {
		t.Errorf("%s: capabilities.drop = %v, want [ALL]", where, d)
	}
	if a := strs(dig(csc, "capabilities", "add")); !slices.Equal(a, []string{"NET_BIND_SERVICE"}) {
		t.Errorf("%s: capabilities.add = %v, want [NET_BIND_SERVICE]", where, a)
	}
	if dig(pod, "hostNetwork") == true {
		t.Errorf("%s: hostNetwork: the pod must keep its own network namespace", where)
	}
}

// checkSelectors: the workload's selector and every Service's selector
// match the pod template's labels.
func checkSelectors(t *testing.T, w object, services map[string]object) {
	t.Helper()
	labels, _ := dig(w, "spec", "template", "metadata", "labels").(map[string]any)
	match := func(what string, sel any) {
		m, _ := sel.(map[string]any)
		if len(m) == 0 {
			t.Errorf("%s has no selector", what)
		}
		for k, v := range m {
			if labels[k] != v {
				t.Errorf("%s selects %s=%v; the pod template has %s=%v", what, k, v, k, labels[k])
			}
		}
	}
	match(w.kind()+" "+w.name(), dig(w, "spec", "selector", "matchLabels"))
	for name, s := range services {
		match("Service "+name, dig(s, "spec", "selector"))
	}
}

// checkVolumes: every mount is a volume, every ConfigMap and Secret a volume
// names exists (and so do the keys of its items), and returns the mounts.
func checkVolumes(t *testing.T, w object, pod any, c map[string]any, kinds map[string]map[string]object) []mount {
	t.Helper()
	volumes := map[string]map[string]any{}
	for _, v := range list(dig(pod, "volumes")) {
		name, _ := v["name"].(string)
		volumes[name] = v
	}
	var out []mount
	for _, vm := range list(c["volumeMounts"]) {
		name, _ := vm["name"].(string)
		mp, _ := vm["mountPath"].(string)
		v, ok := volumes[name]
		if !ok {
			t.Errorf("%s: volumeMount %q names no volume", w.name(), name)
			continue
		}
		if vm["subPath"] != nil {
			t.Errorf("%s: volumeMount %q uses subPath: its files would not follow ConfigMap and Secret updates", w.name(), name)
		}
		m := mount{path: mp}
		switch {
		case v["configMap"] != nil:
			m.kind, m.name = "ConfigMap", dig(v, "configMap", "name").(string)
		case v["secret"] != nil:
			m.kind, m.name = "Secret", dig(v, "secret", "secretName").(string)
		default:
			continue
		}
		src, ok := kinds[m.kind][m.name]
		if !ok {
			t.Errorf("%s: volume %q mounts %s %q, which the manifests do not define", w.name(), name, m.kind, m.name)
			continue
		}
		keys := dataKeys(src)
		m.files = keys
		if items := list(dig(v, strings.ToLower(m.kind[:1])+m.kind[1:], "items")); len(items) > 0 {
			m.files = map[string]string{}
			for _, it := range items {
				k, _ := it["key"].(string)
				p, _ := it["path"].(string)
				if _, ok := keys[k]; !ok {
					t.Errorf("%s: volume %q item key %q is not in %s %s", w.name(), name, k, m.kind, m.name)
				}
				m.files[p] = keys[k]
			}
		}
		out = append(out, m)
	}
	return out
}

// fileIn finds the mount and key that show an absolute container path.
func fileIn(mounts []mount, p string) (mount, string, bool) {
	for _, m := range mounts {
		if rel, ok := strings.CutPrefix(p, m.path+"/"); ok {
			_, has := m.files[rel]
			return m, rel, has
		}
	}
	return mount{}, "", false
}

// checkConfig writes the mounted ConfigMap holding the -config file to a
// temporary folder, runs `meridian check` on it, loads it, and checks that
// every file it names is in a mounted ConfigMap or Secret.
func checkConfig(t *testing.T, cfgPath string, mounts []mount) *config.Config {
	t.Helper()
	m, key, ok := fileIn(mounts, cfgPath)
	if !ok || m.kind != "ConfigMap" {
		t.Errorf("-config %s is not a key of a mounted ConfigMap", cfgPath)
		return nil
	}
	dir := t.TempDir()
	for name, content := range m.files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	file := filepath.Join(dir, key)
	out, err := runTool(t, dir, 30*time.Second, meridianBinary(t), "check", file)
	if err != nil {
		t.Errorf("meridian check on ConfigMap %s %s: %v\n%s", m.name, key, err, out)
		return nil
	}
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatalf("config.Load: %v", err)
	}
	// Relative paths resolve against the configuration's folder: map the
	// temporary folder back to the mount.
	inPod := func(p string) string {
		if rel, ok := strings.CutPrefix(p, dir+"/"); ok {
			return m.path + "/" + rel
		}
		return p
	}
	for keyPath, p := range configFiles(cfg) {
		if p == "" {
			continue
		}
		if _, _, ok := fileIn(mounts, inPod(p)); !ok {
			t.Errorf("configuration key %s names %s, which no mounted ConfigMap or Secret provides", keyPath, inPod(p))
		}
	}
	return cfg
}

// configFiles lists every file a configuration names, by key.
func configFiles(cfg *config.Config) map[string]string {
	f := map[string]string{
		"http.tls_cert": cfg.HTTP.TLSCert, "http.tls_key": cfg.HTTP.TLSKey, "http.client_ca": cfg.HTTP.ClientCA,
		"gossip.keyring": cfg.Gossip.Keyring, "geoip.database": cfg.GeoIP.Database,
	}
	tls := func(key string, t config.TLSFiles) {
		f[key+".ca"], f[key+".cert"], f[key+".key"] = t.CA, t.Cert, t.Key
	}
	tls("tls", cfg.TLS)
	tls("gossip", cfg.Gossip.TLSFiles)
	for name, ch := range cfg.Checks {
		tls("checks."+name, ch.TLSFiles)
	}
	for i, z := range cfg.Zones {
		f[fmt.Sprintf("zones[%d].records", i)] = z.Records
	}
	return f
}

// containerPorts maps "port/PROTOCOL" to the container port's name.
func containerPorts(t *testing.T, c map[string]any) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, p := range list(c["ports"]) {
		num, _ := p["containerPort"].(int)
		proto, _ := p["protocol"].(string)
		if proto == "" {
			proto = "TCP"
		}
		name, _ := p["name"].(string)
		out[fmt.Sprintf("%d/%s", num, proto)] = name
	}
	return out
}

// checkPorts: the configuration listens on the pod's addresses, on ports the
// container declares.
func checkPorts(t *testing.T, cfg *config.Config, ports map[string]string) {
	t.Helper()
	need := func(key, addr string, protos ...string) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			t.Errorf("%s %q: %v", key, addr, err)
			return
		}
		if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
			t.Errorf("%s %q listens on loopback: nothing outside the pod reaches it", key, addr)
		}
		for _, proto := range protos {
			if _, ok := ports[port+"/"+proto]; !ok {
				t.Errorf("%s %q: the container declares no port %s/%s (has %v)", key, addr, port, proto, slices.Sorted(maps.Keys(ports)))
			}
		}
	}
	for i, l := range cfg.DNS.Listen {
		need(fmt.Sprintf("dns.listen[%d]", i), l, "UDP", "TCP")
	}
	need("http.listen", cfg.HTTP.Listen, "TCP")
	if cfg.Gossip.Enabled {
		protos := []string{"TCP"}
		if cfg.Gossip.Transport == "udp" {
			protos = append(protos, "UDP")
		}
		need("gossip.bind", cfg.Gossip.Bind, protos...)
	}
}

// checkProbes: liveness on /healthz, readiness on /readyz, at the admin
// port, with the scheme the admin listener serves.
func checkProbes(t *testing.T, cfg *config.Config, c map[string]any, ports map[string]string) {
	t.Helper()
	_, adminPort, _ := net.SplitHostPort(cfg.HTTP.Listen)
	scheme := "HTTP"
	if cfg.HTTP.TLSCert != "" {
		scheme = "HTTPS"
		if cfg.HTTP.ClientCA != "" {
			t.Errorf("http.client_ca demands client certificates, which the kubelet's probes cannot present")
		}
	}
	for probe, want := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
		get := dig(c, probe, "httpGet")
		if get == nil {
			t.Errorf("%s is not an httpGet probe", probe)
			continue
		}
		if p := dig(get, "path"); p != want {
			t.Errorf("%s path %v, want %s", probe, p, want)
		}
		s, _ := dig(get, "scheme").(string)
		if s == "" {
			s = "HTTP"
		}
		if s != scheme {
			t.Errorf("%s scheme %s, but the admin listener serves %s", probe, s, scheme)
		}
		port := dig(get, "port")
		if name, ok := port.(string); ok {
			if ports[adminPort+"/TCP"] != name {
				t.Errorf("%s port %q is not the container port of http.listen %s", probe, name, cfg.HTTP.Listen)
			}
		} else if strconv.Itoa(port.(int)) != adminPort {
			t.Errorf("%s port %v is not http.listen's %s", probe, port, adminPort)
		}
	}
}

// checkServices: some Service carries DNS on port 53 over UDP and TCP, and
// every Service port targets a declared container port.
func checkServices(t *testing.T, services map[string]object, ports map[string]string) {
	t.Helper()
	byName := map[string]string{} // container port name → "port/PROTO"
	for k, name := range ports {
		byName[name] = k
	}
	dns := map[string]bool{}
	for name, s := range services {
		for _, p := range list(dig(s, "spec", "ports")) {
			proto, _ := p["protocol"].(string)
			if proto == "" {
				proto = "TCP"
			}
			var target string
			switch tp := p["targetPort"].(type) {
			case string:
				target = byName[tp]
			case int:
				target = fmt.Sprintf("%d/%s", tp, proto)
			case nil:
				target = fmt.Sprintf("%v/%s", p["port"], proto)
			}
			if _, ok := ports[target]; !ok || !strings.HasSuffix(target, "/"+proto) {
				t.Errorf("Service %s port %v/%s targets %v, which is no %s port of the container", name, p["port"], proto, p["targetPort"], proto)
				continue
			}
			if p["port"] == 53 {
				dns[proto] = true
			}
		}
	}
	if !dns["UDP"] || !dns["TCP"] {
		t.Errorf("no Service serves DNS on port 53 over both UDP and TCP (have %v)", dns)
	}
}
