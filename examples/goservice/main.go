// The goservice example: a small HTTP service built in two stages (a Go toolchain,
// then a slim runtime image), with its version and greeting passed as build args.
package main

import (
	"encoding/json"
	"log"
	"net/http"
	"os"
	"strconv"
)

var (
	version  = "dev"   // -ldflags "-X main.version=..."
	greeting = "hello" // -ldflags "-X main.greeting=..."
)

func main() {
	http.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{
			"greeting": greeting, "version": version, "path": r.URL.Path,
		})
	})
	http.HandleFunc("/square/", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.URL.Path[len("/square/"):])
		if err != nil {
			http.Error(w, "not a number", http.StatusBadRequest)
			return
		}
		json.NewEncoder(w).Encode(map[string]int{"square": n * n})
	})
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	log.Printf("goservice %s listening on :%s", version, port)
	log.Fatal(http.ListenAndServe(":"+port, nil))
}
