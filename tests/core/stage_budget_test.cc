#include "core/stage_budget.h"

#include <vector>

#include "gtest/gtest.h"

namespace relay {
namespace {

struct Peer : StageWaiter {
  int woken = 0;
  void OnStageAvailable() override { ++woken; }
};

StageBudget::Limits Small() {
  StageBudget::Limits l;
  l.total = 1000;
  l.per_session = 400;
  l.headroom = 200;
  l.small_session = 50;
  return l;
}

// One share as large as the reactor, no headroom: only the reactor-wide limit matters.
StageBudget::Limits ReactorOnly() {
  StageBudget::Limits l = Small();
  l.per_session = 1000;
  l.headroom = 0;
  return l;
}

// The session's head holds its whole share (Small(): 400) inside a frame, 10 bytes to go.
void HeadFillsTheShare(StageBudget* budget, StageAccount* a, Peer* head) {
  EXPECT_EQ(budget->Grant(a, head, 400, true), 400u);
  EXPECT_TRUE(budget->ClaimHead(a, head, 10));
}

TEST(StageBudgetTest, GrantsAsBytesArriveUpToTheSessionShare) {
  StageBudget budget(Small());
  StageAccount a;
  Peer p;
  StageBudget::Limit why;
  EXPECT_EQ(budget.Grant(&a, &p, 300, false, &why), 300u);
  EXPECT_EQ(why, StageBudget::Limit::kNone);
  EXPECT_EQ(budget.Grant(&a, &p, 300, false, &why), 100u);  // share is 400
  EXPECT_EQ(why, StageBudget::Limit::kSession);
  EXPECT_EQ(budget.used(), 400u);
  budget.Release(&a, 400);
  EXPECT_EQ(budget.used(), 0u);
  EXPECT_EQ(a.used, 0u);
}

TEST(StageBudgetTest, BigSessionsLeaveTheHeadroomToSmallOnes) {
  StageBudget budget(Small());
  StageAccount big1, big2, big3, small;
  Peer p1, p2, p3, ps;
  EXPECT_EQ(budget.Grant(&big1, &p1, 400, false), 400u);
  EXPECT_EQ(budget.Grant(&big2, &p2, 400, false), 400u);
  StageBudget::Limit why;
  // 800 of 1000 used; big sessions may use only total - headroom = 800.
  EXPECT_EQ(budget.Grant(&big3, &p3, 100, false, &why), 50u);  // small until it holds 50
  EXPECT_EQ(budget.Grant(&big3, &p3, 100, false, &why), 0u);
  EXPECT_EQ(why, StageBudget::Limit::kReactor);
  // A small session still gets memory from the headroom.
  EXPECT_EQ(budget.Grant(&small, &ps, 40, false), 40u);
  budget.Release(&big1, 400);
  budget.Release(&big2, 400);
  budget.Release(&big3, 50);
  budget.Release(&small, 40);
}

TEST(StageBudgetTest, TheHeadFrameIsReservedInsideItsSession) {
  StageBudget budget(Small());
  StageAccount a;
  Peer head, other;
  EXPECT_EQ(budget.Grant(&a, &head, 100, true), 100u);
  EXPECT_TRUE(budget.ClaimHead(&a, &head, 250));  // 250 more bytes of its frame to come
  EXPECT_FALSE(budget.ClaimHead(&a, &other, 300));
  StageBudget::Limit why;
  // 400 - 100 used - 250 reserved = 50 for the other peer.
  EXPECT_EQ(budget.Grant(&a, &other, 200, true, &why), 50u);
  EXPECT_EQ(why, StageBudget::Limit::kSession);
  budget.Wait(&a, &other, why);
  // The head gets the rest of its frame.
  EXPECT_EQ(budget.Grant(&a, &head, 250, true), 250u);
  budget.DropHead(&a, &head);
  EXPECT_EQ(other.woken, 1);  // the reservation is gone: the other peer goes on
  EXPECT_FALSE(other.waiting());
  budget.Release(&a, 400);
}

TEST(StageBudgetTest, AHeadFinishesItsFrameEvenWhenOthersPartialFramesFillTheShare) {
  // Before any frame was the session's head, two peers' partial frames took the whole
  // share (400). The one that becomes head then needs 50 more bytes: it gets them beyond
  // the share (by at most its frame), so its frame completes and drains; the others
  // still get nothing beyond the share.
  StageBudget budget(Small());
  StageAccount a;
  Peer p1, p2;
  StageBudget::Limit why;
  EXPECT_EQ(budget.Grant(&a, &p1, 250, true), 250u);
  EXPECT_EQ(budget.Grant(&a, &p2, 150, true), 150u);
  EXPECT_TRUE(budget.ClaimHead(&a, &p2, 50));
  EXPECT_EQ(budget.Grant(&a, &p1, 10, true, &why), 0u);
  EXPECT_EQ(why, StageBudget::Limit::kSession);
  EXPECT_EQ(budget.Grant(&a, &p2, 80, true, &why), 50u);  // its frame's rest, no more
  EXPECT_EQ(a.used, 450u);
  budget.DropHead(&a, &p2);
  budget.Release(&a, 200);                            // p2's frame drained to the node
  EXPECT_EQ(budget.Grant(&a, &p1, 200, true), 150u);  // back inside the share
  budget.Release(&a, 400);
}

TEST(StageBudgetTest, PeersWaitingInsideAFrameAreWokenBeforeThoseAtABoundary) {
  // When the head's frame is whole, the next head must come from a peer inside a frame:
  // waking only peers at a frame boundary (which cannot finish anything) would leave the
  // share full of partial frames and nobody to finish one.
  StageBudget budget(Small());
  StageAccount a;
  Peer head, inside;
  std::vector<Peer> boundary(20);
  HeadFillsTheShare(&budget, &a, &head);
  for (Peer& p : boundary) {
    budget.Wait(&a, &p, StageBudget::Limit::kSession, /*in_frame=*/false);
  }
  budget.Wait(&a, &inside, StageBudget::Limit::kSession, /*in_frame=*/true);
  budget.DropHead(&a, &head);
  EXPECT_EQ(inside.woken, 1);  // though 20 peers at a boundary waited before it
  EXPECT_EQ(boundary[19].woken, 0);
  // Memory drained: again those inside a frame first.
  budget.Wait(&a, &inside, StageBudget::Limit::kSession, /*in_frame=*/true);
  budget.Release(&a, 10);
  EXPECT_EQ(inside.woken, 2);
  for (Peer& p : boundary) {
    budget.Cancel(&p);
  }
  budget.Release(&a, 390);
}

TEST(StageBudgetTest, APeerWokenToBeTheHeadThatLeavesBeforeItRunsPassesItsWakeUpOn) {
  // The head's frame is whole and the first peer waiting inside a frame is woken to take
  // the vacant role; its connection closes before it runs, holding no staged byte (so
  // no Release wakes anyone). Its DropHead must wake the next peer inside a frame.
  StageBudget budget(Small());
  StageAccount a;
  Peer head, leaving, next;
  HeadFillsTheShare(&budget, &a, &head);
  budget.Wait(&a, &leaving, StageBudget::Limit::kSession, /*in_frame=*/true);
  budget.Wait(&a, &next, StageBudget::Limit::kSession, /*in_frame=*/true);
  budget.DropHead(&a, &head);
  EXPECT_EQ(leaving.woken, 1);
  EXPECT_EQ(next.woken, 0);
  budget.Cancel(&leaving);  // what ProxyConnection::Discard does, then DropHead
  budget.DropHead(&a, &leaving);
  EXPECT_EQ(next.woken, 1);
  EXPECT_TRUE(budget.ClaimHead(&a, &next, 10));
  budget.DropHead(&a, &leaving);  // with the role taken, nobody more is woken
  EXPECT_EQ(next.woken, 1);
  budget.DropHead(&a, &next);
  budget.Release(&a, 400);
}

TEST(StageBudgetTest, APeerGrantedMemoryWithoutAWakeUpStopsWaiting) {
  // A waiting peer can run for another reason (more bytes arrived) and find memory. It
  // must leave its list: else the one wake-up a vacant head role gets would go to it,
  // and the peer that really waits inside a frame would never be woken.
  StageBudget budget(Small());
  StageAccount a;
  Peer head, stale, waiting;
  HeadFillsTheShare(&budget, &a, &head);
  budget.Wait(&a, &stale, StageBudget::Limit::kSession, /*in_frame=*/true);
  budget.Release(&a, 100);  // the head's earlier frame drained...
  EXPECT_EQ(stale.woken, 1);
  budget.Wait(&a, &stale, StageBudget::Limit::kSession, /*in_frame=*/true);
  EXPECT_EQ(budget.Grant(&a, &stale, 50, true), 50u);  // ...and it ran on its own
  EXPECT_FALSE(stale.waiting());
  budget.Wait(&a, &waiting, StageBudget::Limit::kSession, /*in_frame=*/true);
  budget.DropHead(&a, &head);
  EXPECT_EQ(waiting.woken, 1);
  EXPECT_EQ(stale.woken, 1);
  budget.Release(&a, 350);
}

TEST(StageBudgetTest, PartialFramesThatFillTheReactorFinishWithinTheOverdraft) {
  // Four sessions each hold 200 bytes of a 300-byte frame: the reactor is at its limit
  // for big sessions and none of them could finish in it. Session heads are let finish
  // beyond the total, as many at once as the overdraft holds with their frames' rests
  // counted whole, so a head whose sender is slow does not hold back the others.
  StageBudget::Limits l = Small();
  l.overdraft = 300;
  StageBudget budget(l);
  StageAccount a[5];
  Peer p[5];
  for (int i = 0; i < 4; ++i) {
    ASSERT_EQ(budget.Grant(&a[i], &p[i], 200, false), 200u);
    ASSERT_TRUE(budget.ClaimHead(&a[i], &p[i], 100));
  }
  EXPECT_EQ(budget.Grant(&a[4], &p[4], 200, false), 50u);  // small-session headroom only
  ASSERT_TRUE(budget.ClaimHead(&a[4], &p[4], 250));
  // Head 0's sender has sent 10 of its 100 bytes so far: it is admitted and the rest
  // of its frame reserved.
  EXPECT_EQ(budget.Grant(&a[0], &p[0], 10, false), 10u);
  EXPECT_TRUE(p[0].finishing());
  ASSERT_TRUE(budget.ClaimHead(&a[0], &p[0], 90));
  EXPECT_EQ(budget.reserved(), 90u);
  // The others do not wait for it: each fits beside its reservation, finishes, and
  // its frame's bytes stay staged until its node takes them.
  for (int i = 1; i < 4; ++i) {
    EXPECT_EQ(budget.Grant(&a[i], &p[i], 100, false), 100u) << i;
    EXPECT_EQ(budget.finishing_heads(), 2u);
    budget.DropHead(&a[i], &p[i]);  // its frame is whole
  }
  EXPECT_EQ(budget.used(), 1160u);
  // Head 4's 250 does not fit beside head 0's 90 (1160 + 90 + 250 > 1300): it waits, and
  // is woken when head 0's frame is whole.
  StageBudget::Limit why;
  EXPECT_EQ(budget.Grant(&a[4], &p[4], 250, false, &why), 0u);
  EXPECT_EQ(why, StageBudget::Limit::kReactor);
  EXPECT_FALSE(p[4].finishing());
  budget.Wait(&a[4], &p[4], why, /*in_frame=*/true);
  EXPECT_EQ(budget.Grant(&a[0], &p[0], 90, false), 90u);  // the slow one finishes too
  budget.DropHead(&a[0], &p[0]);
  EXPECT_EQ(p[4].woken, 1);
  EXPECT_EQ(budget.finishing_heads(), 0u);
  EXPECT_EQ(budget.reserved(), 0u);
  EXPECT_EQ(budget.used(), 1250u);
  // Never more than total + overdraft: a frame larger than what is left, with no head
  // finishing, is admitted anyway and gets what is left.
  EXPECT_EQ(budget.Grant(&a[4], &p[4], 250, false), 50u);
  EXPECT_EQ(budget.used(), 1300u);
  EXPECT_EQ(budget.overdraft_granted(), 300u);
  EXPECT_EQ(budget.available(), 0u);
  budget.DropHead(&a[4], &p[4]);
  for (int i = 0; i < 4; ++i) {
    budget.Release(&a[i], 300);
  }
  budget.Release(&a[4], 100);
  EXPECT_EQ(budget.used(), 0u);
}

TEST(StageBudgetTest, AFinishingHeadLargerThanTheOverdraftLeftWaitsAndIsWokenFirst) {
  StageBudget::Limits l = ReactorOnly();
  l.overdraft = 300;
  StageBudget budget(l);
  StageAccount a, b, c, filler;
  Peer pa, pb, pc, pf;
  ASSERT_EQ(budget.Grant(&filler, &pf, 400, false), 400u);
  ASSERT_EQ(budget.Grant(&a, &pa, 200, false), 200u);
  ASSERT_EQ(budget.Grant(&b, &pb, 200, false), 200u);
  ASSERT_EQ(budget.Grant(&c, &pc, 200, false), 200u);  // 1000 of 1000: full
  ASSERT_TRUE(budget.ClaimHead(&a, &pa, 390));
  ASSERT_TRUE(budget.ClaimHead(&b, &pb, 100));
  // A's frame (390 to go) is larger than the overdraft; with no head finishing it is
  // admitted all the same (someone must finish), and holds its reservation between
  // reads: a head that gave up its place whenever its socket emptied let partial frames
  // pile up overdrafts until none could finish.
  EXPECT_EQ(budget.Grant(&a, &pa, 10, false), 10u);
  EXPECT_TRUE(pa.finishing());
  StageBudget::Limit why;
  EXPECT_EQ(budget.Grant(&b, &pb, 100, false, &why), 0u);  // nothing left for B's 100
  EXPECT_EQ(why, StageBudget::Limit::kReactor);
  budget.Wait(&b, &pb, why, /*in_frame=*/true);
  EXPECT_EQ(budget.Grant(&a, &pa, 380, false, &why), 290u);  // total + overdraft reached
  ASSERT_TRUE(budget.ClaimHead(&a, &pa, 90));
  EXPECT_EQ(budget.Grant(&a, &pa, 90, false, &why), 0u);
  budget.Wait(&a, &pa, why, /*in_frame=*/true);
  // Memory frees (C's frame went out): the finishing head is woken first; B's 100 now
  // fits beside A's 90 (1100 used + 90 reserved + 100 <= 1300): it is woken too.
  budget.Release(&c, 200);
  EXPECT_EQ(pa.woken, 1);
  EXPECT_EQ(pb.woken, 1);
  EXPECT_EQ(budget.Grant(&b, &pb, 100, false), 100u);
  EXPECT_EQ(budget.finishing_heads(), 2u);
  EXPECT_EQ(budget.Grant(&a, &pa, 90, false), 90u);
  budget.DropHead(&a, &pa);  // A's frame is whole
  EXPECT_FALSE(pa.finishing());
  budget.Cancel(&pb);  // going away also ends a reservation
  EXPECT_FALSE(pb.finishing());
  EXPECT_EQ(budget.finishing_heads(), 0u);
  EXPECT_EQ(budget.reserved(), 0u);
  budget.DropHead(&b, &pb);
  budget.Release(&a, 590);
  budget.Release(&b, 300);
  budget.Release(&filler, 400);
  EXPECT_EQ(budget.used(), 0u);
}

TEST(StageBudgetTest, ReactorWaitersAreWokenInArrivalOrder) {
  StageBudget budget(ReactorOnly());
  StageAccount hog, a, b, c;
  Peer ph, pa, pb, pc;
  EXPECT_EQ(budget.Grant(&hog, &ph, 1000, false), 1000u);
  for (auto [acct, peer] : {std::pair{&a, &pa}, {&b, &pb}, {&c, &pc}}) {
    StageBudget::Limit why;
    EXPECT_EQ(budget.Grant(acct, peer, 10, false, &why), 0u);
    EXPECT_EQ(why, StageBudget::Limit::kReactor);
    budget.Wait(acct, peer, why);
  }
  EXPECT_EQ(budget.reactor_waiters(), 3u);
  budget.Release(&hog, 10);  // a little: only the first waiter is woken
  EXPECT_EQ(pa.woken, 1);
  EXPECT_EQ(pb.woken + pc.woken, 0);
  budget.Cancel(&pc);  // a waiter that goes away leaves the queue
  budget.Release(&hog, 990);
  EXPECT_EQ(pb.woken, 1);
  EXPECT_EQ(pc.woken, 0);
  EXPECT_EQ(budget.reactor_waiters(), 0u);
}

TEST(StageBudgetTest, UnusedGrantsWakeNobody) {
  StageBudget budget(Small());
  StageAccount a;
  Peer p, waiter;
  EXPECT_EQ(budget.Grant(&a, &p, 400, false), 400u);
  budget.Wait(&a, &waiter, StageBudget::Limit::kSession);
  budget.Unused(&a, 100);
  EXPECT_EQ(waiter.woken, 0);
  budget.Release(&a, 300);
  EXPECT_EQ(waiter.woken, 1);
}

TEST(StageBudgetTest, PartialLargeFramesOfOtherPeersShareHalfTheSessionShare) {
  StageBudget budget(Small());  // share 400
  StageAccount a;
  Peer head, large, small;
  StageBudget::Limit why;
  EXPECT_EQ(budget.Grant(&a, &head, 150, true), 150u);
  EXPECT_TRUE(budget.ClaimHead(&a, &head, 10));  // 160 of the share: the head's frame
  large.set_large_partial(true);
  // Another peer inside a large frame stops at half the share (200), the head's rest
  // counted, and waits apart.
  EXPECT_EQ(budget.Grant(&a, &large, 100, true, &why), 40u);
  EXPECT_EQ(why, StageBudget::Limit::kPartial);
  budget.Wait(&a, &large, why, /*in_frame=*/true);
  EXPECT_EQ(a.partial_waiters.size(), 1u);
  // The other half is for frames that finish.
  EXPECT_EQ(budget.Grant(&a, &small, 300, true, &why), 200u);
  EXPECT_EQ(why, StageBudget::Limit::kSession);
  // Draining the small frames does not wake it while the session holds half its share...
  budget.Release(&a, 200);
  EXPECT_EQ(large.woken, 0);
  // ... the head's frame ending does (it may become the head).
  budget.DropHead(&a, &head);
  EXPECT_EQ(large.woken, 1);
  EXPECT_TRUE(budget.ClaimHead(&a, &large, 1000));
  EXPECT_EQ(budget.Grant(&a, &large, 300, true, &why), 300u);  // the head: its frame
  budget.Release(&a, a.used);
}

}  // namespace
}  // namespace relay
