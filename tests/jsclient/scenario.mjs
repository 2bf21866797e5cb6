// scenario.mjs drives an unmodified matrix-js-sdk (the library Element Web is
// built on) against a running Rempart server, the way Element does: UIA
// registration, password login, long-polling sync, rooms and invites,
// messages, reactions and their redaction, edits, threads, receipts, typing,
// profiles, back-pagination, push rules, account data, tags and leaving.
//
// Usage: node scenario.mjs <baseURL>
//
// It prints one "ok <step>" line per step and exits 0 when all pass; on the
// first failure it prints "FAIL <step>: <reason>" and exits 1. It is run by
// jsclient_test.go in the Go test suite.

import {
  createClient,
  ClientEvent,
  Direction,
  EventType,
  InteractiveAuth,
  MsgType,
  Preset,
  ReceiptType,
  RelationType,
  RoomEvent,
  RoomMemberEvent,
  SyncState,
  ThreadEvent,
} from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";

const baseUrl = process.argv[2];
if (!baseUrl) {
  console.error("usage: node scenario.mjs <baseURL>");
  process.exit(2);
}

// The SDK logs a lot through console.* (every sync at info level, and
// errors that are its own, e.g. MatrixRTC state seen before a new room is
// stored, or push rules the spec dropped in v1.17 that it re-adds locally).
// Keep the test output to our steps: SDK lines are kept in a ring buffer and
// printed only on failure. JSCLIENT_SDK_LOG=debug passes everything through.
logger.setLevel(process.env.JSCLIENT_SDK_LOG || "warn");
const sdkLog = [];
if (!process.env.JSCLIENT_SDK_LOG) {
  for (const m of ["log", "info", "warn", "error", "debug", "trace"]) {
    console[m] = (...args) => {
      sdkLog.push(`[sdk ${m}] ${args.map((a) => (a instanceof Error ? a.message : String(a))).join(" ")}`);
      if (sdkLog.length > 200) sdkLog.shift();
    };
  }
}
const say = (line) => process.stdout.write(line + "\n");

const STEP_TIMEOUT_MS = 15000;
const PASSWORD = "correct horse battery staple";
const suffix = `${process.pid}${Date.now() % 100000}`;
const clients = [];
let current = "setup";

function ok(detail) {
  say(`ok ${current}${detail ? ` (${detail})` : ""}`);
}

function check(cond, reason) {
  if (!cond) throw new Error(reason);
}

// step runs one named step of the scenario.
async function step(name, fn) {
  current = name;
  const detail = await fn();
  ok(detail);
}

// waitFor resolves when cond() returns a truthy value, checked now and again
// after every emission of the named events (and every 100ms as a backstop).
function waitFor(what, cond, emitters = [], ms = STEP_TIMEOUT_MS) {
  return new Promise((resolve, reject) => {
    const subs = [];
    let timer;
    let poll;
    const done = (err, v) => {
      clearTimeout(timer);
      clearInterval(poll);
      for (const [em, ev, fn] of subs) em.removeListener(ev, fn);
      if (err) reject(err);
      else resolve(v);
    };
    const test = () => {
      try {
        const v = cond();
        if (v) done(null, v);
      } catch (e) {
        done(e);
      }
    };
    for (const [em, ev] of emitters) {
      em.on(ev, test);
      subs.push([em, ev, test]);
    }
    timer = setTimeout(() => done(new Error(`timed out after ${ms}ms waiting for ${what}`)), ms);
    poll = setInterval(test, 100);
    test();
  });
}

// onceEvent resolves with the arguments of the first emission of ev for
// which pred holds. Subscribe before triggering the action.
function onceEvent(em, ev, pred, what, ms = STEP_TIMEOUT_MS) {
  return new Promise((resolve, reject) => {
    const fn = (...args) => {
      if (!pred(...args)) return;
      clearTimeout(timer);
      em.removeListener(ev, fn);
      resolve(args);
    };
    const timer = setTimeout(() => {
      em.removeListener(ev, fn);
      reject(new Error(`timed out after ${ms}ms waiting for ${what}`));
    }, ms);
    em.on(ev, fn);
  });
}

// register creates an account with the UIA dummy flow, as Element's
// registration form does: a first request without auth returns the flows and
// a session, the m.login.dummy stage is then submitted with that session.
async function register(localpart) {
  const anon = createClient({ baseUrl });
  const sent = []; // the auth dict of each /register attempt
  const ia = new InteractiveAuth({
    matrixClient: anon,
    doRequest: (auth) => {
      sent.push(auth);
      return anon.registerRequest({
        username: localpart,
        password: PASSWORD,
        initial_device_display_name: "matrix-js-sdk test",
        auth: auth ?? undefined,
      });
    },
    // The SDK submits m.login.dummy by itself; any other stage means the
    // server asked for something this open-registration test cannot give.
    stateUpdated: (stage) => {
      throw new Error(`server asked for UIA stage ${stage}`);
    },
    requestEmailToken: () => Promise.reject(new Error("no email in this test")),
  });
  const resp = await ia.attemptAuth();
  check(sent.length === 2 && sent[0] === null, `expected a 401 round trip then one auth submission, got ${JSON.stringify(sent)}`);
  check(sent[1]?.type === "m.login.dummy" && sent[1]?.session, `second attempt was ${JSON.stringify(sent[1])}`);
  check(resp.user_id && resp.access_token && resp.device_id, `register response lacks credentials: ${JSON.stringify(Object.keys(resp))}`);
  return resp;
}

// start creates a client for the given credentials and starts it with the
// options Element uses, resolving once the initial sync is PREPARED.
async function start(creds, initialSyncLimit = 20) {
  const cli = createClient({
    baseUrl,
    userId: creds.user_id,
    accessToken: creds.access_token,
    deviceId: creds.device_id,
    timelineSupport: true,
  });
  clients.push(cli);
  const prepared = onceEvent(cli, ClientEvent.Sync, (state) => state === SyncState.Prepared, "sync state PREPARED");
  const failed = onceEvent(cli, ClientEvent.Sync, (state) => state === SyncState.Error, "sync error", 10 * STEP_TIMEOUT_MS).then(
    ([, , data]) => {
      throw new Error(`sync went to ERROR: ${data?.error?.message ?? "unknown"}`);
    },
  );
  failed.catch(() => {}); // only observed through the race below
  await cli.startClient({
    initialSyncLimit,
    lazyLoadMembers: true,
    pendingEventOrdering: "detached",
    threadSupport: true,
  });
  await Promise.race([prepared, failed]);
  return cli;
}

// timelineBodies lists the bodies of m.room.message events in a room's live
// timeline, oldest first.
function timelineBodies(room) {
  return room
    .getLiveTimeline()
    .getEvents()
    .filter((e) => e.getType() === EventType.RoomMessage)
    .map((e) => e.getContent().body);
}

function findMessage(room, body) {
  return room
    ?.getLiveTimeline()
    .getEvents()
    .find((e) => e.getType() === EventType.RoomMessage && e.getOriginalContent().body === body);
}

async function main() {
  const aliceName = `jsalice${suffix}`;
  const bobName = `jsbob${suffix}`;
  let aliceReg, bobReg, aliceLogin;
  let alice, bob;
  let roomId;

  await step("versions and login flows", async () => {
    const anon = createClient({ baseUrl });
    const versions = await anon.getVersions();
    check(Array.isArray(versions.versions) && versions.versions.length > 0, "no versions advertised");
    const flows = await anon.loginFlows();
    check(
      flows.flows.some((f) => f.type === "m.login.password"),
      `m.login.password not offered: ${JSON.stringify(flows.flows)}`,
    );
    check(await anon.isUsernameAvailable(aliceName), "fresh username reported unavailable");
    return `server speaks ${versions.versions.join(", ")}`;
  });

  await step("register two users with UIA m.login.dummy", async () => {
    aliceReg = await register(aliceName);
    bobReg = await register(bobName);
    check(aliceReg.user_id.startsWith(`@${aliceName}:`), `unexpected user id ${aliceReg.user_id}`);
    return `${aliceReg.user_id}, ${bobReg.user_id}`;
  });

  await step("password login with m.login.password identifier", async () => {
    const anon = createClient({ baseUrl });
    aliceLogin = await anon.loginRequest({
      type: "m.login.password",
      identifier: { type: "m.id.user", user: aliceName },
      password: PASSWORD,
      initial_device_display_name: "matrix-js-sdk login",
    });
    check(aliceLogin.user_id === aliceReg.user_id, `login returned ${aliceLogin.user_id}`);
    check(aliceLogin.device_id !== aliceReg.device_id, "login reused the registration device");
    let refused = false;
    try {
      await createClient({ baseUrl }).loginRequest({
        type: "m.login.password",
        identifier: { type: "m.id.user", user: aliceName },
        password: "wrong password",
      });
    } catch (e) {
      refused = e.errcode === "M_FORBIDDEN" && e.httpStatus === 403;
      check(refused, `wrong password gave ${e.httpStatus} ${e.errcode}`);
    }
    check(refused, "wrong password accepted");
    return `device ${aliceLogin.device_id}`;
  });

  await step("startClient initial sync reaches PREPARED", async () => {
    alice = await start(aliceLogin);
    bob = await start(bobReg);
    check(alice.isInitialSyncComplete() && bob.isInitialSyncComplete(), "initial sync not complete");
    check(alice.pushRules?.global, "push rules not loaded by startClient");
    const caps = await alice.getCapabilities();
    check(caps["m.change_password"] !== undefined || caps["m.room_versions"], `capabilities: ${JSON.stringify(caps)}`);
    const devices = await alice.getDevices();
    check(devices.devices.length === 2, `alice has ${devices.devices.length} devices, want 2`);
  });

  await step("create private_chat room with a name", async () => {
    const resp = await alice.createRoom({ preset: Preset.PrivateChat, name: "SDK test room", topic: "from matrix-js-sdk" });
    roomId = resp.room_id;
    const room = await waitFor("room in alice's store", () => alice.getRoom(roomId), [[alice, ClientEvent.Room]]);
    await waitFor("room name from sync", () => room.name === "SDK test room", [[room, RoomEvent.Name]]);
    check(room.getMyMembership() === "join", `alice membership ${room.getMyMembership()}`);
    const jr = room.currentState.getStateEvents(EventType.RoomJoinRules, "")?.getContent().join_rule;
    check(jr === "invite", `private_chat join rule is ${jr}`);
    return roomId;
  });

  await step("invite bob; bob sees the invite and joins via the SDK", async () => {
    await alice.invite(roomId, bob.getUserId());
    const invited = await waitFor(
      "invite in bob's sync",
      () => bob.getRoom(roomId)?.getMyMembership() === "invite" && bob.getRoom(roomId),
      [[bob, ClientEvent.Room], [bob, RoomEvent.MyMembership]],
    );
    const inviter = invited.getMember(bob.getUserId())?.events.member?.getSender();
    check(inviter === alice.getUserId(), `invite sender ${inviter}`);
    await bob.joinRoom(roomId);
    await waitFor("bob joined in his own sync", () => bob.getRoom(roomId)?.getMyMembership() === "join", [
      [bob, RoomEvent.MyMembership],
    ]);
    const aroom = alice.getRoom(roomId);
    await waitFor("alice sees bob joined", () => aroom.getMember(bob.getUserId())?.membership === "join", [
      [alice, RoomMemberEvent.Membership],
    ]);
    // The count comes from the sync summary (lazy-loaded members).
    await waitFor(`joined member count 2 (have ${aroom.getJoinedMemberCount()})`, () => aroom.getJoinedMemberCount() === 2, [
      [alice, ClientEvent.Sync],
    ]);
  });

  let aliceMsg; // the MatrixEvent on bob's side for alice's first message
  let reactionId;

  await step("messages both ways through long-polling sync", async () => {
    const aroom = alice.getRoom(roomId);
    const broom = bob.getRoom(roomId);
    const gotByBob = onceEvent(
      bob,
      RoomEvent.Timeline,
      (ev, room) => room?.roomId === roomId && ev.getContent().body === "hello from alice",
      "alice's message on bob's timeline",
    );
    const sent = await alice.sendMessage(roomId, { msgtype: MsgType.Text, body: "hello from alice" });
    const [ev] = await gotByBob;
    check(ev.getId() === sent.event_id, `bob received ${ev.getId()}, alice sent ${sent.event_id}`);
    check(ev.getSender() === alice.getUserId(), `sender ${ev.getSender()}`);
    aliceMsg = ev;

    const gotByAlice = onceEvent(
      alice,
      RoomEvent.Timeline,
      (e, room) => room?.roomId === roomId && e.getContent().body === "hello from bob",
      "bob's message on alice's timeline",
    );
    await bob.sendMessage(roomId, { msgtype: MsgType.Text, body: "hello from bob" });
    await gotByAlice;
    // alice's own message must have been reconciled with its remote echo.
    await waitFor("alice's local echo replaced by the remote echo", () => {
      const e = findMessage(aroom, "hello from alice");
      return e && e.getId() === sent.event_id && !e.status;
    });
    // With pendingEventOrdering "detached" bob's own message joins the live
    // timeline when its remote echo comes down his sync.
    await waitFor(
      `both messages in order on bob's timeline (have: ${timelineBodies(broom).join(" | ")})`,
      () => timelineBodies(broom).join(" | ") === "hello from alice | hello from bob",
      [[bob, RoomEvent.Timeline]],
    );
  });

  await step("reaction aggregated with room.relations", async () => {
    const aroom = alice.getRoom(roomId);
    const target = aliceMsg.getId();
    const reaction = await bob.sendEvent(roomId, EventType.Reaction, {
      "m.relates_to": { rel_type: RelationType.Annotation, event_id: target, key: "👍" },
    });
    reactionId = reaction.event_id;
    const annotations = await waitFor(
      "reaction aggregated on alice's side",
      () => {
        const rel = aroom.relations.getChildEventsForEvent(target, RelationType.Annotation, EventType.Reaction);
        const byKey = rel?.getSortedAnnotationsByKey();
        return byKey?.length ? byKey : null;
      },
      [[alice, RoomEvent.Timeline]],
    );
    const [key, events] = annotations[0];
    check(key === "👍", `annotation key ${key}`);
    check(events.size === 1 && [...events][0].getSender() === bob.getUserId(), "annotation sender mismatch");
    return `${key} x${events.size}`;
  });

  await step("redacting the reaction removes it from the aggregation", async () => {
    const aroom = alice.getRoom(roomId);
    const target = aliceMsg.getId();
    await bob.redactEvent(roomId, reactionId);
    await waitFor(
      "reaction gone from alice's aggregation",
      () => {
        const rel = aroom.relations.getChildEventsForEvent(target, RelationType.Annotation, EventType.Reaction);
        // The SDK keeps the key with an empty set, as Element expects.
        return !rel?.getSortedAnnotationsByKey()?.some(([, evs]) => evs.size > 0);
      },
      [[alice, RoomEvent.Redaction], [alice, RoomEvent.Timeline]],
    );
    const redacted = aroom.findEventById(reactionId);
    check(!redacted || redacted.isRedacted(), "reaction event not marked redacted");
  });

  await step("edit (m.replace) applied via replacingEvent()", async () => {
    const target = aliceMsg.getId();
    await alice.sendEvent(roomId, EventType.RoomMessage, {
      msgtype: MsgType.Text,
      body: "* hello from alice (edited)",
      "m.new_content": { msgtype: MsgType.Text, body: "hello from alice (edited)" },
      "m.relates_to": { rel_type: RelationType.Replace, event_id: target },
    });
    const broom = bob.getRoom(roomId);
    const original = await waitFor(
      "edit applied on bob's side",
      () => {
        const e = broom.findEventById(target);
        return e?.replacingEvent() ? e : null;
      },
      [[bob, RoomEvent.Timeline]],
    );
    check(original.getContent().body === "hello from alice (edited)", `edited body ${original.getContent().body}`);
    check(original.getOriginalContent().body === "hello from alice", "original content lost");
    check(original.replacingEvent().getSender() === alice.getUserId(), "edit sender mismatch");
    // The server-side view: /relations for the original lists the edit.
    const rel = await bob.relations(roomId, target, RelationType.Replace, null);
    check(rel.events.length === 1, `server /relations returned ${rel.events.length} edits`);
  });

  await step("thread reply (m.thread) builds a Thread on the other client", async () => {
    const broom = bob.getRoom(roomId);
    const root = findMessage(alice.getRoom(roomId), "hello from bob");
    check(root, "thread root not on alice's timeline");
    const rootId = root.getId();
    try {
      await alice.sendMessage(roomId, rootId, {
        msgtype: MsgType.Text,
        body: "a reply in a thread",
        "m.relates_to": { rel_type: RelationType.Thread, event_id: rootId, is_falling_back: true, "m.in_reply_to": { event_id: rootId } },
      });
    } catch (e) {
      // matrix-js-sdk 37.5.0 race, on the client's side: when the remote
      // echo of a *thread* event reaches the sender's /sync before the
      // /send answer, Room.updatePendingEvent looks for the event only in
      // the main timeline, misses it in the thread's, and throws although
      // the event was sent (the spec lets the echo come first; that is
      // what unsigned.transaction_id is for). Accept that error only, and
      // check below that the reply really reached the server and bob.
      if (!String(e?.message).includes("updatePendingEventStatus called on an event which is not a local echo")) throw e;
      console.log("note: js-sdk local-echo race on a thread event (remote echo before the /send answer)");
    }
    const thread = await waitFor(
      "thread with alice's reply on bob's side",
      () => {
        const th = broom.getThread(rootId);
        return th?.replyToEvent?.getContent().body === "a reply in a thread" ? th : null;
      },
      [[bob, ThreadEvent.New], [bob, ThreadEvent.Update], [bob, RoomEvent.Timeline]],
    );
    check(thread.length === 1, `thread length ${thread.length}`);
    check(!timelineBodies(broom).includes("a reply in a thread"), "thread reply leaked into the main timeline");
    // The server's thread list (GET /threads) knows the root.
    const threads = await bob.createThreadListMessagesRequest(roomId, null, 10, Direction.Backward);
    check(threads.chunk.some((e) => e.event_id === rootId), "GET /threads does not list the root");
  });

  await step("read receipt seen by the other client (Room.receipt)", async () => {
    const aroom = alice.getRoom(roomId);
    const broom = bob.getRoom(roomId);
    const target = broom.findEventById(aliceMsg.getId());
    const seen = onceEvent(
      alice,
      RoomEvent.Receipt,
      (ev, room) => room?.roomId === roomId && JSON.stringify(ev.getContent()).includes(bob.getUserId()),
      "bob's receipt in alice's sync",
    );
    // Element sends receipts for the latest event in the timeline.
    const latest = broom.getLiveTimeline().getEvents().at(-1);
    await bob.sendReadReceipt(latest, ReceiptType.Read);
    await seen;
    const upTo = aroom.getEventReadUpTo(bob.getUserId());
    check(upTo === latest.getId(), `alice sees bob read up to ${upTo}, want ${latest.getId()}`);
    check(aroom.hasUserReadEvent(bob.getUserId(), target.getId()), "earlier event not counted as read");
  });

  await step("typing notification seen by the other client (RoomMember.typing)", async () => {
    const startTyping = onceEvent(
      bob,
      RoomMemberEvent.Typing,
      (ev, member) => member.roomId === roomId && member.userId === alice.getUserId() && member.typing,
      "alice typing=true on bob's side",
    );
    await alice.sendTyping(roomId, true, 20000);
    await startTyping;
    const stopTyping = onceEvent(
      bob,
      RoomMemberEvent.Typing,
      (ev, member) => member.roomId === roomId && member.userId === alice.getUserId() && !member.typing,
      "alice typing=false on bob's side",
    );
    await alice.sendTyping(roomId, false, 0);
    await stopTyping;
  });

  await step("display name change visible in the other client's member list", async () => {
    const aroom = alice.getRoom(roomId);
    await bob.setDisplayName("Bob the Builder");
    const member = await waitFor(
      "bob's new display name on alice's side",
      () => {
        const m = aroom.getMember(bob.getUserId());
        return m?.name === "Bob the Builder" ? m : null;
      },
      [[alice, RoomMemberEvent.Name]],
    );
    const profile = await alice.getProfileInfo(bob.getUserId());
    check(profile.displayname === "Bob the Builder", `profile displayname ${profile.displayname}`);
    check(aroom.getJoinedMembers().some((m) => m.rawDisplayName === "Bob the Builder"), "not in joined members");
    return member.name;
  });

  await step("paginate back with scrollback and createMessagesRequest", async () => {
    const N = 25;
    const want = [];
    for (let i = 0; i < N; i++) want.push(`backlog ${String(i).padStart(2, "0")}`);
    for (const body of want) await alice.sendMessage(roomId, { msgtype: MsgType.Text, body });
    const broom = bob.getRoom(roomId);
    await waitFor("backlog on bob's side", () => findMessage(broom, want.at(-1)), [[bob, RoomEvent.Timeline]]);

    // A fresh device for bob, started with a short initial sync, must
    // paginate back to the room's creation.
    const bobLogin = await createClient({ baseUrl }).loginWithPassword(bobName, PASSWORD);
    const bob2 = await start(bobLogin, 5);
    const room = await waitFor("room in bob2's store", () => bob2.getRoom(roomId), [[bob2, ClientEvent.Room]]);
    const initial = room.getLiveTimeline().getEvents().length;
    check(initial <= 5, `initial sync returned ${initial} events with limit 5`);
    let pages = 0;
    while (!room.getLiveTimeline().getEvents().some((e) => e.getType() === EventType.RoomCreate)) {
      check(++pages <= 20, "scrollback never reached m.room.create");
      const before = room.getLiveTimeline().getEvents().length;
      await bob2.scrollback(room, 10);
      const after = room.getLiveTimeline().getEvents().length;
      check(after > before || room.oldState.paginationToken === null, `scrollback made no progress at ${before} events`);
      if (room.oldState.paginationToken === null) break;
    }
    const events = room.getLiveTimeline().getEvents();
    check(events[0].getType() === EventType.RoomCreate, `oldest event is ${events[0].getType()}`);
    const ids = events.map((e) => e.getId());
    check(new Set(ids).size === ids.length, "duplicate events after scrollback");
    const backlog = timelineBodies(room).filter((b) => b.startsWith("backlog "));
    check(backlog.join() === want.join(), `backlog order after scrollback: ${backlog.join(", ")}`);
    check(timelineBodies(room)[0] === "hello from alice (edited)", `first message shows ${timelineBodies(room)[0]}`);

    // Raw /messages via the SDK, backwards from the end and following the
    // end token, must yield the same newest messages without overlap.
    const page1 = await bob2.createMessagesRequest(roomId, null, 10, Direction.Backward);
    const page2 = await bob2.createMessagesRequest(roomId, page1.end, 10, Direction.Backward);
    const bodies = [...page1.chunk, ...page2.chunk]
      .filter((e) => e.type === EventType.RoomMessage && e.content.body?.startsWith("backlog "))
      .map((e) => e.content.body);
    check(bodies.length === 20, `createMessagesRequest gave ${bodies.length} backlog messages in 2 pages`);
    check(bodies.join() === want.slice(-20).reverse().join(), `createMessagesRequest order: ${bodies.join(", ")}`);
    bob2.stopClient();
    return `${pages} scrollback pages, ${events.length} events`;
  });

  await step("push rules", async () => {
    const rules = await alice.getPushRules();
    const g = rules.global;
    const ids = (kind) => (g[kind] ?? []).map((r) => r.rule_id);
    check(ids("override").includes(".m.rule.master"), `override rules: ${ids("override")}`);
    check(ids("underride").includes(".m.rule.message"), `underride rules: ${ids("underride")}`);
    check(ids("content").includes(".m.rule.contains_user_name") || ids("override").includes(".m.rule.is_user_mention"), "no mention rule");
    // Element's per-room "mute" writes an override rule for the room.
    await alice.addPushRule("global", "override", roomId, {
      actions: [],
      conditions: [{ kind: "event_match", key: "room_id", pattern: roomId }],
    });
    await waitFor(
      "room push rule in alice's synced rules",
      () => alice.pushRules?.global?.override?.some((r) => r.rule_id === roomId),
      [[alice, ClientEvent.AccountData]],
    );
    await alice.deletePushRule("global", "override", roomId);
    return `${Object.values(g).flat().length} rules`;
  });

  await step("account data (global and room)", async () => {
    const seen = onceEvent(alice, ClientEvent.AccountData, (ev) => ev.getType() === "im.rempart.test", "account data in sync");
    await alice.setAccountData("im.rempart.test", { hello: "world" });
    await seen;
    check(alice.getAccountData("im.rempart.test")?.getContent().hello === "world", "synced account data content");
    const fromServer = await alice.getAccountDataFromServer("im.rempart.test");
    check(fromServer?.hello === "world", `getAccountDataFromServer: ${JSON.stringify(fromServer)}`);
    const room = alice.getRoom(roomId);
    await alice.setRoomAccountData(roomId, "im.rempart.room", { n: 1 });
    await waitFor("room account data in sync", () => room.getAccountData("im.rempart.room")?.getContent().n === 1, [
      [room, RoomEvent.AccountData],
    ]);
  });

  await step("room tags", async () => {
    const room = alice.getRoom(roomId);
    await alice.setRoomTag(roomId, "m.favourite", { order: 0.5 });
    await waitFor("m.favourite in synced tags", () => room.tags["m.favourite"]?.order === 0.5, [[room, RoomEvent.Tags]]);
    const tags = await alice.getRoomTags(roomId);
    check(tags.tags["m.favourite"]?.order === 0.5, `getRoomTags: ${JSON.stringify(tags)}`);
    await alice.deleteRoomTag(roomId, "m.favourite");
    await waitFor("m.favourite removed from synced tags", () => !room.tags["m.favourite"], [[room, RoomEvent.Tags]]);
  });

  await step("bob leaves; both clients see it", async () => {
    const aroom = alice.getRoom(roomId);
    await bob.leave(roomId);
    await waitFor("bob's own membership leave", () => bob.getRoom(roomId)?.getMyMembership() === "leave", [
      [bob, RoomEvent.MyMembership],
    ]);
    await waitFor("alice sees bob left", () => aroom.getMember(bob.getUserId())?.membership === "leave", [
      [alice, RoomMemberEvent.Membership],
    ]);
    await bob.forget(roomId);
  });

  await step("stop clients", async () => {
    for (const c of clients) c.stopClient();
    for (const c of clients) check(c.getSyncState() === null || !c.clientRunning, "client still running");
  });
}

main().then(
  () => {
    say("PASS all steps");
    process.exit(0);
  },
  (err) => {
    say(`FAIL ${current}: ${err?.message ?? err}`);
    if (sdkLog.length) say(`--- last SDK log lines ---\n${sdkLog.slice(-60).join("\n")}`);
    if (err?.stack) say(err.stack);
    for (const c of clients) c.stopClient();
    process.exit(1);
  },
);
