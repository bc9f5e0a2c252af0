// Package api holds the service's API contracts. openapi.yaml is the REST API's OpenAPI 3.1
// description; it is embedded here so the service serves the very file it ships.
package api

import _ "embed"

// OpenAPI is api/openapi.yaml.
//
//go:embed openapi.yaml
var OpenAPI []byte
