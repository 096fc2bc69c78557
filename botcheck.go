package revguard

import "context"

// BotChecker verifies that a human is behind a request before inventory is touched. It
// fails closed.
type BotChecker interface {
	// Verify checks the single-use token. It returns nil for a human, fails with
	// CodeBotCheckFailed when the token is missing, invalid, expired or already used (a
	// verdict on the token), and with CodeBotCheckUnavailable when no verdict was had: the
	// verifier could not be reached, or its answer could not be used.
	Verify(ctx context.Context, token, remoteIP string) error
}
