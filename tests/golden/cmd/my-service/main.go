// Command my-service: My Service: a Go backend service.
//
// Go is justified: peak 20,000 req/s > 10,000 req/s.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/example/my-service/internal/app"
)

func main() {
	if err := app.Run(context.Background(), os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		_, _ = fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
