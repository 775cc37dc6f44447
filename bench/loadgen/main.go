// Command loadgen drives an HTTPS endpoint the way kube-apiserver drives an admission webhook:
// Go's net/http over TLS with HTTP/1.1 keep-alive (or a new connection per request with -new-conn).
//
// Open loop (-rate > 0): request i is due at start+i/rate and its latency is measured from that due
// time, so a slow server cannot hide queueing (no coordinated omission). Closed loop (-rate 0):
// -conns workers send back to back, for saturation throughput. Prints one JSON object.
package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

type result struct {
	Requests   int     `json:"requests"`
	Errors     int     `json:"errors"`
	Seconds    float64 `json:"seconds"`
	RPS        float64 `json:"rps"`
	P50ms      float64 `json:"p50_ms"`
	P99ms      float64 `json:"p99_ms"`
	P999ms     float64 `json:"p999_ms"`
	MaxMs      float64 `json:"max_ms"`
	// Service time: from sending the request to the end of the response, without the time the
	// request waited for its due slot (open loop). On loopback this bounds the server's own time.
	SvcP50ms  float64 `json:"svc_p50_ms"`
	SvcP99ms  float64 `json:"svc_p99_ms"`
	SvcP999ms float64 `json:"svc_p999_ms"`
	FirstError string  `json:"first_error,omitempty"`
}

func main() {
	url := flag.String("url", "", "target URL")
	method := flag.String("method", "POST", "HTTP method")
	bodyFile := flag.String("body", "", "request body file; __N__ is replaced by a per-request counter")
	caFile := flag.String("ca", "", "CA bundle to verify the server")
	certFile := flag.String("cert", "", "client certificate (optional)")
	keyFile := flag.String("key", "", "client key (optional)")
	rate := flag.Float64("rate", 0, "requests per second (open loop); 0 = closed loop")
	duration := flag.Duration("duration", 5*time.Second, "measured duration")
	warmup := flag.Duration("warmup", time.Second, "unmeasured warm-up")
	conns := flag.Int("conns", 4, "connections (closed loop: workers)")
	newConn := flag.Bool("new-conn", false, "open a new TLS connection per request")
	expect := flag.Int("expect", 0, "expected HTTP status (0: any 2xx)")
	serveAddr := flag.String("serve", "", "instead of loading, serve a trivial HTTPS handler here (calibration)")
	flag.Parse()
	if *serveAddr != "" {
		serve(*serveAddr, *certFile, *keyFile)
		return
	}

	body, err := os.ReadFile(*bodyFile)
	if err != nil && *bodyFile != "" {
		fail(err)
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			fail(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		tlsCfg.RootCAs = pool
	}
	if *certFile != "" {
		pair, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			fail(err)
		}
		tlsCfg.Certificates = []tls.Certificate{pair}
	}
	tr := &http.Transport{
		TLSClientConfig: tlsCfg, MaxIdleConns: *conns * 2, MaxIdleConnsPerHost: *conns * 2,
		MaxConnsPerHost: 0, IdleConnTimeout: 90 * time.Second, DisableKeepAlives: *newConn,
		ForceAttemptHTTP2: false, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
	}
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	templated := bytes.Contains(body, []byte("__N__"))
	var counter atomic.Int64
	do := func() (time.Duration, error) {
		b := body
		if templated {
			b = bytes.ReplaceAll(body, []byte("__N__"), []byte(strconv.FormatInt(counter.Add(1), 10)))
		}
		req, _ := http.NewRequest(*method, *url, bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if (*expect != 0 && resp.StatusCode != *expect) || (*expect == 0 && resp.StatusCode/100 != 2) {
			return 0, fmt.Errorf("status %d", resp.StatusCode)
		}
		return time.Since(start), nil
	}

	var mu sync.Mutex
	var lat, svc []time.Duration
	var errs int
	var firstErr string
	record := func(d, service time.Duration, err error, measured bool) {
		if !measured {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			errs++
			if firstErr == "" {
				firstErr = err.Error()
			}
			return
		}
		lat = append(lat, d)
		svc = append(svc, service)
	}

	begin := time.Now()
	measureFrom := begin.Add(*warmup)
	end := measureFrom.Add(*duration)
	var wg sync.WaitGroup
	if *rate > 0 {
		interval := time.Duration(float64(time.Second) / *rate)
		sem := make(chan struct{}, 512)
		for i := 0; ; i++ {
			due := begin.Add(time.Duration(i) * interval)
			if due.After(end) {
				break
			}
			time.Sleep(time.Until(due))
			sem <- struct{}{}
			wg.Add(1)
			go func(due time.Time) {
				defer wg.Done()
				defer func() { <-sem }()
				service, err := do()
				record(time.Since(due), service, err, !due.Before(measureFrom))
			}(due)
		}
	} else {
		for w := 0; w < *conns; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					now := time.Now()
					if now.After(end) {
						return
					}
					d, err := do()
					record(d, d, err, !now.Before(measureFrom))
				}
			}()
		}
	}
	wg.Wait()
	elapsed := end.Sub(measureFrom).Seconds()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	sort.Slice(svc, func(i, j int) bool { return svc[i] < svc[j] })
	pct := func(xs []time.Duration, p float64) float64 {
		if len(xs) == 0 {
			return 0
		}
		i := int(p * float64(len(xs)-1))
		return float64(xs[i].Microseconds()) / 1000
	}
	r := result{Requests: len(lat), Errors: errs, Seconds: elapsed, RPS: float64(len(lat)) / elapsed,
		P50ms: pct(lat, 0.50), P99ms: pct(lat, 0.99), P999ms: pct(lat, 0.999), FirstError: firstErr,
		SvcP50ms: pct(svc, 0.50), SvcP99ms: pct(svc, 0.99), SvcP999ms: pct(svc, 0.999)}
	if len(lat) > 0 {
		r.MaxMs = float64(lat[len(lat)-1].Microseconds()) / 1000
	}
	_ = json.NewEncoder(os.Stdout).Encode(r)
}

// serve answers every request with a fixed allowed review: the fastest server this machine can
// run, to show how much of the measured latency is the machine and the client.
func serve(addr, cert, key string) {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"x","allowed":true}}`))
	})
	srv := &http.Server{Addr: addr, TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){}}
	fail(srv.ListenAndServeTLS(cert, key))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "loadgen:", err)
	os.Exit(2)
}
