package auth

import (
	"fmt"
	"unicode/utf8"
)

// Password length limits (bytes). The upper bound keeps hashing cheap to
// refuse.
const (
	minPasswordLen = 8
	maxPasswordLen = 1024
)

// CheckPassword validates a new password's length.
func CheckPassword(pw string) error {
	switch {
	case len(pw) < minPasswordLen:
		return &FieldError{Field: "password", Msg: fmt.Sprintf("must be at least %d characters", minPasswordLen)}
	case len(pw) > maxPasswordLen:
		return &FieldError{Field: "password", Msg: fmt.Sprintf("must be at most %d bytes", maxPasswordLen)}
	case !utf8.ValidString(pw):
		return &FieldError{Field: "password", Msg: "must be valid UTF-8"}
	}
	return nil
}

// checkName validates an account name: 1..63 of [a-z0-9._-], starting with
// a letter or digit.
func checkName(field, s string) error {
	if s == "" {
		return &FieldError{Field: field, Msg: "is required"}
	}
	if len(s) > 63 {
		return &FieldError{Field: field, Msg: "must be at most 63 characters"}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || i > 0 && (c == '.' || c == '_' || c == '-')
		if !ok {
			return &FieldError{Field: field, Msg: "may contain only a-z, 0-9, '.', '_' and '-', starting with a letter or digit"}
		}
	}
	return nil
}

// checkUsername validates a user name: 1..64 of [a-z0-9._@+-], starting with
// a letter or digit (e-mail addresses fit).
func checkUsername(s string) error {
	if s == "" {
		return &FieldError{Field: "username", Msg: "is required"}
	}
	if len(s) > 64 {
		return &FieldError{Field: "username", Msg: "must be at most 64 characters"}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' ||
			i > 0 && (c == '.' || c == '_' || c == '-' || c == '@' || c == '+')
		if !ok {
			return &FieldError{Field: "username", Msg: "may contain only a-z, 0-9, '.', '_', '-', '@' and '+', starting with a letter or digit"}
		}
	}
	return nil
}
