package submit

import (
	"github.com/emersion/go-sasl"
)

// loginServer is the server side of the obsolete but widespread LOGIN
// mechanism (draft-murchison-sasl-login): challenges "Username:" and
// "Password:"; an initial response is the user name. go-sasl has only the
// client side.
type loginServer struct {
	authenticate func(user, pass string) error
	state        int // 0: start, 1: want user, 2: want password, 3: done
	user         string
}

func newLoginServer(authenticate func(user, pass string) error) sasl.Server {
	return &loginServer{authenticate: authenticate}
}

// Next implements sasl.Server.
func (a *loginServer) Next(resp []byte) (challenge []byte, done bool, err error) {
	switch a.state {
	case 0:
		if len(resp) == 0 {
			a.state = 1
			return []byte("Username:"), false, nil
		}
		a.user, a.state = string(resp), 2
		return []byte("Password:"), false, nil
	case 1:
		a.user, a.state = string(resp), 2
		return []byte("Password:"), false, nil
	case 2:
		a.state = 3
		return nil, true, a.authenticate(a.user, string(resp))
	}
	return nil, false, sasl.ErrUnexpectedClientResponse
}
