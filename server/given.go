package server

import "slices"

// maxGaps bounds how many runs of ids a socket remembers as not given
// below the highest id it was given (see givenIDs): 16 bytes each, 1 KiB
// at most.
const maxGaps = 64

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
// Representation: everything in [lo, hi] except the runs in gaps has been
// given. Ids are dense (a serial), so a history of any length costs two
// integers plus its gaps, and a gap costs the same whatever its length: ids
// burned by a resend (INSERT … ON CONFLICT DO NOTHING still takes one),
// allotted and not committed yet when the history was read (late messages,
// which split or shrink their gap when they arrive), or never sent to this
// socket at all (a broadcast that reached the hub before the socket joined
// while a later one, from another sender, reached it after). A typical
// socket has no gap or a few: about 50 bytes. Past maxGaps the lowest gaps
// are forgotten and lo moves above them: ids below lo are then treated as
// never given, so the set errs towards repeating a message older than
// maxGaps gaps, never towards losing one.
type givenIDs struct {
	lo, hi int64 // empty while hi == 0 (ids start at 1)
	gaps   []gap // ascending, disjoint, not adjacent, each inside (lo, hi)
}

// gap is a run of ids, from and to included, that were not given.
type gap struct{ from, to int64 }

// find returns the index of the gap holding id, or where one would go, and
// whether id is in a gap.
func (g *givenIDs) find(id int64) (int, bool) {
	i, _ := slices.BinarySearchFunc(g.gaps, id, func(r gap, id int64) int {
		switch {
		case r.to < id:
			return -1
		case r.from > id:
			return 1
		}
		return 0
	})
	return i, i < len(g.gaps) && g.gaps[i].from <= id && id <= g.gaps[i].to
}

// has reports whether id was given.
func (g *givenIDs) has(id int64) bool {
	if g.hi == 0 || id < g.lo || id > g.hi {
		return false
	}
	_, in := g.find(id)
	return !in
}

// add records id as given and reports whether it was new.
func (g *givenIDs) add(id int64) bool {
	switch {
	case id <= 0:
		return true // not a stored message: nothing to remember
	case g.hi == 0:
		g.lo, g.hi = id, id
	case id > g.hi:
		if id > g.hi+1 {
			g.gaps = append(g.gaps, gap{g.hi + 1, id - 1})
		}
		g.hi = id
	case id < g.lo:
		// A page of older messages, or a late one below the history.
		if id < g.lo-1 {
			g.gaps = slices.Insert(g.gaps, 0, gap{id + 1, g.lo - 1})
		}
		g.lo = id
	default:
		i, in := g.find(id)
		if !in {
			return false
		}
		switch r := &g.gaps[i]; {
		case r.from == r.to:
			g.gaps = slices.Delete(g.gaps, i, i+1)
		case id == r.from:
			r.from++
		case id == r.to:
			r.to--
		default:
			g.gaps = slices.Insert(g.gaps, i+1, gap{id + 1, r.to})
			g.gaps[i].to = id - 1
		}
	}
	if n := len(g.gaps) - maxGaps; n > 0 {
		g.lo = g.gaps[n-1].to + 1
		g.gaps = slices.Delete(g.gaps, 0, n)
	}
	return true
}
