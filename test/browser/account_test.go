package browser

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mxcont/mxcont/admin/auth"
)

// apiStatus calls GET /api/v1/me on the node with an API token and returns
// the HTTP status.
func apiStatus(t *testing.T, base, token string) int {
	t.Helper()
	req, err := http.NewRequest("GET", base+"/api/v1/me", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	c := &http.Client{Timeout: 10 * time.Second}
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET /api/v1/me with the token: %v", err)
	}
	res.Body.Close()
	return res.StatusCode
}

// login logs in to the portal as admin with password and waits for the
// dashboard.
func (b *browser) login(what, password string) {
	b.t.Helper()
	b.do(what, wait,
		chromedp.WaitVisible(chromedp.ID("login-username")),
		clear("login-username"),
		clear("login-password"),
		chromedp.SendKeys(chromedp.ID("login-username"), "admin"),
		chromedp.SendKeys(chromedp.ID("login-password"), password),
		chromedp.Click(chromedp.ID("login-submit")),
		chromedp.WaitVisible(chromedp.ID("view-dashboard")))
}

// TestPortalAccount is the Account view: an administrator creates an API
// token and sees its secret once, the secret works against the API until
// the token is revoked in the portal; then the administrator changes the
// password (a wrong current password is refused with the error at its
// field) and logs in with the new one, the old one no longer working.
func TestPortalAccount(t *testing.T) {
	needChromium(t)
	start := time.Now()
	const newPassword = "browser-test-new-password"
	node := startNode(t, adminPassword)
	base := "http://" + node.HTTPAddr()
	sh := newShots(t)
	b := startBrowser(t, base, sh)
	b.do("desktop viewport", wait, chromedp.EmulateViewport(1280, 900))
	b.do("open the portal", wait, chromedp.Navigate(base+"/"))
	b.login("log in", adminPassword)

	// --- Account, reachable from the navigation.
	b.do("open Account", wait,
		chromedp.Click(chromedp.ID("nav-account")),
		chromedp.WaitVisible(chromedp.ID("view-account")),
		chromedp.WaitVisible(chromedp.ID("token-empty")))
	if got := eval[string](b, "account header", `document.querySelector('#account-who').textContent`); !strings.Contains(got, "admin") {
		t.Errorf("account view says %q, want the user admin", got)
	}
	if !eval[bool](b, "nav active", `document.querySelector('#nav-account').classList.contains('active')`) {
		t.Error("the Account navigation entry is not marked active")
	}

	// --- Create tokens: one to keep, one to try and revoke. A missing
	// name is refused in the browser.
	b.do("create a token without a name", wait, chromedp.Click(chromedp.ID("token-submit")))
	b.waitJS("name error shown", `document.querySelector('#token-form [data-error-for="name"]').textContent.trim() !== ''`, wait)
	b.do("create the token ci-deploy", wait,
		chromedp.SendKeys(chromedp.ID("token-name"), "ci-deploy"),
		chromedp.Click(chromedp.ID("token-submit")),
		chromedp.WaitVisible(chromedp.ID("token-created")),
		chromedp.Click(chromedp.ID("token-done")),
		chromedp.WaitNotVisible(chromedp.ID("token-created")))
	if v := eval[string](b, "secret cleared", `document.querySelector('#token-secret').value`); v != "" {
		t.Errorf("after Done the secret is still in the page: %q", v)
	}
	b.do("create the token monitoring", wait,
		chromedp.SendKeys(chromedp.ID("token-name"), "monitoring"),
		chromedp.Click(chromedp.ID("token-submit")),
		chromedp.WaitVisible(chromedp.ID("token-created")))
	b.waitJS("two tokens listed", `document.querySelectorAll('#token-table tbody tr').length === 2`, wait)
	secret := eval[string](b, "token secret", `document.querySelector('#token-secret').value`)
	if !strings.HasPrefix(secret, auth.TokenPrefix) {
		t.Fatalf("shown token secret %q does not start with %q", secret, auth.TokenPrefix)
	}
	note := eval[string](b, "token note", `document.querySelector('#token-created').innerText`)
	if !strings.Contains(note, "monitoring") || !strings.Contains(note, "will not be shown again") {
		t.Errorf("new token note %q: want the name and that it will not be shown again", note)
	}
	id := eval[string](b, "token id", `[...document.querySelectorAll('#token-table tbody tr')].find((r) => r.innerText.includes('monitoring'))?.dataset.id || ''`)
	if id == "" {
		t.Fatal("the token monitoring is not in the table")
	}
	b.shot("account-01-token-created.png")

	if st := apiStatus(t, base, secret); st != http.StatusOK {
		t.Fatalf("API call with the new token: HTTP %d, want 200", st)
	}

	// --- Revoke it (the confirmation answered yes).
	row := `#token-table tbody tr[data-id="` + id + `"]`
	b.do("revoke the token", wait,
		chromedp.Evaluate[chromedp.Void](`window.confirm = (m) => { window.confirmed = m; return true; }`),
		chromedp.Click(chromedp.CSS(row+` button.revoke-token`)),
		chromedp.WaitNotPresent(chromedp.CSS(row)))
	if m := eval[string](b, "confirmation", `window.confirmed || ''`); !strings.Contains(m, "monitoring") {
		t.Errorf("confirmation %q does not name the token", m)
	}
	if n := eval[int](b, "tokens left", `document.querySelectorAll('#token-table tbody tr').length`); n != 1 {
		t.Errorf("%d tokens listed after the revocation, want 1 (ci-deploy)", n)
	}
	if st := apiStatus(t, base, secret); st != http.StatusUnauthorized {
		t.Fatalf("API call with the revoked token: HTTP %d, want 401", st)
	}

	// --- Change the password: repeated wrongly (caught in the browser),
	// a wrong current password (the API's 403 at its field), then right.
	b.do("hide the secret", wait, chromedp.Click(chromedp.ID("token-done")))
	b.do("new passwords differ", wait,
		chromedp.SendKeys(chromedp.ID("password-current"), "not-the-password"),
		chromedp.SendKeys(chromedp.ID("password-new"), newPassword),
		chromedp.SendKeys(chromedp.ID("password-repeat"), newPassword+"x"),
		chromedp.Click(chromedp.ID("password-submit")))
	b.waitJS("repeat error shown", `document.querySelector('[data-error-for="new_password_repeat"]').textContent.includes('differ')`, wait)
	b.do("wrong current password", wait,
		clear("password-repeat"),
		chromedp.SendKeys(chromedp.ID("password-repeat"), newPassword),
		chromedp.Click(chromedp.ID("password-submit")))
	b.waitJS("current password error shown", `document.querySelector('[data-error-for="current_password"]').textContent.trim() !== ''`, wait)
	if got := eval[string](b, "current password error", `document.querySelector('[data-error-for="current_password"]').textContent`); !strings.Contains(strings.ToLower(got), "wrong password") {
		t.Errorf("error at the current password = %q, want it to say the password is wrong", got)
	}
	if eval[string](b, "repeat error cleared", `document.querySelector('[data-error-for="new_password_repeat"]').textContent`) != "" {
		t.Error("the earlier repeat error is still shown")
	}
	b.shot("account-02-password-error.png")

	b.do("change the password", wait,
		clear("password-current"),
		chromedp.SendKeys(chromedp.ID("password-current"), adminPassword),
		chromedp.Click(chromedp.ID("password-submit")),
		chromedp.WaitVisible(chromedp.ID("password-ok")))
	if got := eval[string](b, "success", `document.querySelector('#password-ok').textContent`); !strings.Contains(got, "Password changed") {
		t.Errorf("success message %q", got)
	}
	if v := eval[string](b, "fields cleared", `['password-current','password-new','password-repeat'].map((i) => document.getElementById(i).value).join('')`); v != "" {
		t.Error("password fields not cleared after the change")
	}
	b.shot("account-03-password-changed.png")

	// --- Log out; the old password fails, the new one works.
	b.do("log out", wait,
		chromedp.Click(chromedp.ID("logout")),
		chromedp.WaitVisible(chromedp.ID("login-username")))
	b.do("old password", wait,
		clear("login-username"),
		chromedp.SendKeys(chromedp.ID("login-username"), "admin"),
		chromedp.SendKeys(chromedp.ID("login-password"), adminPassword),
		chromedp.Click(chromedp.ID("login-submit")))
	b.waitJS("old password refused", `document.querySelector('#login-error').textContent.includes('Wrong username or password')`, wait)
	b.login("log in with the new password", newPassword)

	// --- A phone: the Account view at 390x844, with the kept token and a
	// new one.
	b.do("phone viewport", wait,
		chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile),
		chromedp.Click(chromedp.ID("nav-account")),
		chromedp.WaitVisible(chromedp.ID("view-account")))
	b.waitJS("token listed", `document.querySelectorAll('#token-table tbody tr').length === 1`, wait)
	b.do("create a token on the phone", wait,
		chromedp.SendKeys(chromedp.ID("token-name"), "phone"),
		chromedp.Click(chromedp.ID("token-submit")),
		chromedp.WaitVisible(chromedp.ID("token-created")))
	b.waitJS("two tokens listed", `document.querySelectorAll('#token-table tbody tr').length === 2`, wait)
	overflow := eval[int](b, "horizontal overflow", `document.documentElement.scrollWidth - document.documentElement.clientWidth`)
	if overflow > 0 {
		t.Errorf("on a phone the page is %dpx wider than the screen", overflow)
	}
	b.shot("account-04-phone.png")

	for _, e := range b.consoleErrors() {
		t.Errorf("browser console: %s", e)
	}
	t.Logf("screenshots in %s: %s", sh.dir, strings.Join(sh.saved, ", "))
	t.Logf("flow took %v", time.Since(start).Round(time.Millisecond))
}
