package server

import "slices"

// maxHoles bounds how many ids a socket remembers as not given below the
// highest id it was given (see givenIDs): 8 bytes each, 1 KiB at most.
const maxHoles = 128

// givenIDs is the set of message ids one socket has been given, by its
// history (`load all messages`), live (`new message`) or in a page
// (`load older messages`); the hub gives a socket a live message only if
// its id is not in the set, and adds it. It is what makes "a socket never
// receives the same message id twice" hold whatever the order of the
// history read, bus events, local broadcasts and resends:
//
//   - a message can reach a server's hub after a socket's history already
//     had it: a bus event (or a resync) for a message committed before the
//     history was read, or the resend of a message stored by a server that
//     died before announcing it (the resend makes the server it reaches
//     broadcast it, since that server never did). Only the history's id set
//     tells those apart from messages the history did not have;
//   - "above the highest id given" is not that test: ids are allotted before
//     commit, so a lower id can become visible after a higher one (two
//     concurrent inserts), and such a late message must still be delivered;
//   - each server broadcasts an id at most once (relay.markSeen), but the
//     set also covers live ids, so that nothing depends on that window.
//
// Representation: everything in [lo, hi] except the ids in holes has been
// given. Ids are dense (a serial), so a history of any length costs two
// integers plus its gaps: ids burned by a resend (INSERT … ON CONFLICT DO
// NOTHING still takes one) or allotted and not committed yet when it was
// read (the late messages above, which fill their hole when they arrive).
// A typical socket has no hole or a few: about 50 bytes. Past maxHoles the
// lowest holes are forgotten and lo moves above them: ids below lo are then
// treated as never given, so the set errs towards a repeat of a message
// more than maxHoles gaps old, never towards losing one.
type givenIDs struct {
	lo, hi int64   // empty while hi == 0 (ids start at 1)
	holes  []int64 // ascending, each in [lo, hi]
}

// has reports whether id was given.
func (g *givenIDs) has(id int64) bool {
	if g.hi == 0 || id < g.lo || id > g.hi {
		return false
	}
	_, hole := slices.BinarySearch(g.holes, id)
	return !hole
}

// add records id as given and reports whether it was new.
func (g *givenIDs) add(id int64) bool {
	switch {
	case id <= 0:
		return true // not a stored message: nothing to remember
	case g.hi == 0:
		g.lo, g.hi = id, id
	case id == g.hi+1: // the common case
		g.hi = id
	case id > g.hi:
		// hi+1 … id-1 were not given; only the newest maxHoles of them
		// can be remembered, and lo must not stay below those forgotten.
		from := g.hi + 1
		if id-from > maxHoles {
			from = id - maxHoles
			g.lo, g.holes = from, g.holes[:0]
		}
		for h := from; h < id; h++ {
			g.holes = append(g.holes, h)
		}
		g.hi = id
	case id < g.lo:
		// A page of older messages, or a late one below the history.
		// Remembered when its gap to lo fits, else let through.
		gap := g.lo - id - 1
		if gap+int64(len(g.holes)) > maxHoles {
			return true
		}
		below := make([]int64, 0, int(gap)+len(g.holes))
		for h := id + 1; h < g.lo; h++ {
			below = append(below, h)
		}
		g.holes = append(below, g.holes...)
		g.lo = id
	default:
		i, hole := slices.BinarySearch(g.holes, id)
		if !hole {
			return false
		}
		g.holes = slices.Delete(g.holes, i, i+1)
	}
	if n := len(g.holes) - maxHoles; n > 0 {
		g.lo = g.holes[n-1] + 1
		g.holes = slices.Delete(g.holes, 0, n)
	}
	return true
}
