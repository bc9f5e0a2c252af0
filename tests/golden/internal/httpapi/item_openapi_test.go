package httpapi

import (
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/example/my-service/api"
	"github.com/example/my-service/internal/domain"
)

// TestItemWireMatchesOpenAPI holds the items' schemas in api/openapi.yaml to the
// wire structs (item.go) and the validation tags (internal/domain): the same JSON
// fields, the same required ones and the same length limits.
func TestItemWireMatchesOpenAPI(t *testing.T) {
	schemas := loadOpenAPI(t, api.OpenAPI).Components.Schemas
	for name, v := range map[string]struct {
		value   any
		request bool
	}{
		"Item":       {itemJSON{}, false},
		"ItemPage":   {itemPage{}, false},
		"ItemInput":  {domain.ItemInput{}, true},
		"ItemUpdate": {updateItemRequest{}, true},
	} {
		ref, ok := schemas[name]
		if !ok || ref.Value == nil {
			t.Errorf("api/openapi.yaml has no schema %s", name)
			continue
		}
		matchSchema(t, name, ref.Value, reflect.TypeOf(v.value), v.request)
	}
}

// matchSchema compares a struct's JSON fields (embedded structs flattened) with an object
// schema: the names, which are required (a request's fields with the required rule, a
// response's fields without omitempty) and each max=N rule as maxLength.
func matchSchema(t *testing.T, name string, s *openapi3.Schema, typ reflect.Type, request bool) {
	t.Helper()
	fields := map[string]bool{}
	var walk func(reflect.Type)
	walk = func(typ reflect.Type) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			if f.Anonymous {
				walk(f.Type)
				continue
			}
			jsonName, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
			fields[jsonName] = true
			prop, ok := s.Properties[jsonName]
			if !ok {
				t.Errorf("%s.%s is on the wire but not in the schema", name, jsonName)
				continue
			}
			rules := strings.Split(f.Tag.Get("validate"), ",")
			required := opts != "omitempty"
			if request {
				required = slices.Contains(rules, "required")
			}
			if required != slices.Contains(s.Required, jsonName) {
				t.Errorf("%s.%s: required is %v in Go, not in the schema", name, jsonName, required)
			}
			for _, rule := range rules {
				if n, ok := strings.CutPrefix(rule, "max="); ok {
					want, _ := strconv.ParseUint(n, 10, 64)
					if prop.Value.MaxLength == nil || *prop.Value.MaxLength != want {
						t.Errorf("%s.%s: max=%s in Go, maxLength %v in the schema", name, jsonName, n, prop.Value.MaxLength)
					}
				}
			}
		}
	}
	walk(typ)
	for prop := range s.Properties {
		if !fields[prop] {
			t.Errorf("%s.%s is in the schema but not on the wire", name, prop)
		}
	}
}
