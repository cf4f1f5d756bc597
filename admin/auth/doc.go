// Package auth holds the admin API's identities: tenant accounts, users
// with argon2id password hashes, browser sessions and API tokens, all kept
// in buckets of a bbolt database shared with the domain registry, plus the
// login throttle.
//
// # Buckets
//
//	accounts  key = account name            value = Account as JSON
//	users     key = user name (lower case)  value = User as JSON (with hash)
//	sessions  key = sha256(session token)   value = Session as JSON
//	tokens    key = sha256(API token)        value = Token as JSON
//
// Secrets handed to clients (session cookies, API tokens) are 32 random
// bytes; only their SHA-256 digests are stored, so a copy of the database
// does not let anyone in. Passwords are stored as PHC-style argon2id
// strings ("$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>") and compared in
// constant time.
//
// A user's sessions and tokens are stored with its name. SetPassword ends
// the user's sessions and DeleteUser removes its sessions and tokens in
// the transaction that changes the user, and new sessions and tokens are
// written only in a transaction that finds the user, so nothing outlives
// a deletion or is left behind by a race with one.
//
// Roles: RoleOperator sees every account; RoleAdmin only the domains,
// queues, messages and events of its own account.
package auth
