package service

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/go-playground/validator/v10"

	"github.com/example/my-service/internal/domain"
)

// newValidator returns a validator that names fields by their JSON names and knows the
// service's own rules for text, which the input structs' tags use (internal/domain):
//
//   - notblank: not empty once leading and trailing whitespace is trimmed (required alone
//     lets "   " through).
//   - text: no control characters but tab, line feed and carriage return (NUL among
//     them: PostgreSQL refuses it, SQLite stores it), and no U+FFFD. The JSON and
//     protobuf decoders turn invalid UTF-8 and lone surrogates into U+FFFD, so refusing
//     it refuses those, whatever the transport, before anything reaches a database.
func newValidator() *validator.Validate {
	v := validator.New(validator.WithRequiredStructEnabled())
	v.RegisterTagNameFunc(func(f reflect.StructField) string {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			return f.Name
		}
		return name
	})
	for tag, fn := range map[string]validator.Func{
		"notblank": func(fl validator.FieldLevel) bool { return strings.TrimSpace(fl.Field().String()) != "" },
		"text":     func(fl validator.FieldLevel) bool { return textProblem(fl.Field().String()) == "" },
	} {
		// Registration fails only for an empty tag or a nil function: a programming error.
		if err := v.RegisterValidation(tag, fn); err != nil {
			panic(err)
		}
	}
	return v
}

// textProblem says what makes s unacceptable as text, or "" when nothing does.
func textProblem(s string) string {
	for i, r := range s {
		switch {
		case r == utf8.RuneError:
			// Ranging over invalid UTF-8 yields RuneError too.
			return fmt.Sprintf("must be valid UTF-8: found an invalid byte, a lone surrogate or U+FFFD at character %d",
				utf8.RuneCountInString(s[:i])+1)
		case unicode.IsControl(r) && r != '\t' && r != '\n' && r != '\r':
			return fmt.Sprintf("must not contain control characters other than tab and line breaks: found %U at character %d",
				r, utf8.RuneCountInString(s[:i])+1)
		}
	}
	return ""
}

// validate checks in against its struct tags and returns a KindInvalid error that lists
// every failing field with a message a client can act on.
func validate(v *validator.Validate, in any) error {
	err := v.Struct(in)
	if err == nil {
		return nil
	}
	var verrs validator.ValidationErrors
	if !errors.As(err, &verrs) {
		return domain.Wrap(domain.KindInternal, err, "validation failed")
	}
	fields := make(map[string]string, len(verrs))
	for _, fe := range verrs {
		fields[fe.Field()] = fieldMessage(fe)
	}
	return domain.Invalid("the request has invalid fields", fields)
}

func fieldMessage(fe validator.FieldError) string {
	switch fe.Tag() {
	case "required":
		return "is required"
	case "notblank":
		return "must not be blank"
	case "text":
		return textProblem(fmt.Sprint(fe.Value()))
	case "max":
		return fmt.Sprintf("must be at most %s characters", fe.Param())
	default:
		return fmt.Sprintf("fails the %q rule", fe.Tag())
	}
}
