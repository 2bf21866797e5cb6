package policy

import "context"

// CanSeeProfile decides whether requester may look up target's profile or
// presence. Look-ups are limited to oneself and to people one shares a
// joined room with (threat model T2/T9: no harvesting of the directory
// through profile look-ups). Unknown users share no room with anyone, so
// the answer does not reveal whether an account exists.
//
// This is narrower than the spec's minimum (which also allows members of
// public or world-readable rooms); it is Rempart's deliberate choice.
func (p *Policy) CanSeeProfile(ctx context.Context, requester, target string) (bool, error) {
	if requester == "" {
		return false, nil
	}
	if requester == target {
		return true, nil
	}
	return p.db.SharesRoom(ctx, requester, target)
}
