// SpiceDB's official Node client (@authzed/authzed-node) against policyd: the core of the
// conformance scenario (tests/api/authzed/scenario.py), so a TypeScript PDS can trust it.
//
//   cd tests/node && npm install && node --test
//
// It starts `policyd serve` (from PATH, or $POLICYD) on a free loopback port with an
// in-memory store, and stops it at the end.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { v1, protobuf } from "@authzed/authzed-node";

const TOKEN = "node-test-token";
const SCHEMA = `caveat ip_allowed(ip string, allowed list<string>) {
    ip in allowed
}

definition account {}

definition space {
    relation member: account | space#member
    relation banned: account
    permission read = member - banned
}

definition post {
    relation space: space
    relation author: account
    relation viewer: account | account:* | account with ip_allowed
    permission view = author + viewer + space->read
}
`;

const POST = "at://did:plc:alice/app.bsky.feed.post/3k2a";

let server;
let address;
let client;

function obj(type, id) {
  return v1.ObjectReference.create({ objectType: type, objectId: id });
}

function sub(type, id, relation = "") {
  return v1.SubjectReference.create({ object: obj(type, id), optionalRelation: relation });
}

function touch(resource, relation, subject, caveat) {
  return v1.RelationshipUpdate.create({
    operation: v1.RelationshipUpdate_Operation.TOUCH,
    relationship: v1.Relationship.create({
      resource,
      relation,
      subject,
      optionalCaveat: caveat,
    }),
  });
}

function fresh(token) {
  return v1.Consistency.create({
    requirement: { oneofKind: "atLeastAsFresh", atLeastAsFresh: token },
  });
}

before(async () => {
  server = spawn(
    process.env.POLICYD ?? "policyd",
    ["serve", "--listen", "127.0.0.1:0", "--metrics-listen", "off", "--store", "memory",
      "--token", TOKEN],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  address = await new Promise((resolve, reject) => {
    server.once("exit", (code) => reject(new Error(`policyd serve exited with ${code}`)));
    createInterface({ input: server.stdout }).on("line", (line) => {
      if (line.startsWith("policyd listening on ")) resolve(line.split(" ")[3]);
    });
  });
  client = v1.NewClient(TOKEN, address, v1.ClientSecurity.INSECURE_PLAINTEXT_CREDENTIALS)
    .promises;
});

after(() => {
  client?.close?.();
  server?.kill("SIGTERM");
});

let written;

test("WriteSchema and WriteRelationships, DIDs and AT-URIs as ids", async () => {
  await client.writeSchema(v1.WriteSchemaRequest.create({ schema: SCHEMA }));
  const response = await client.writeRelationships(v1.WriteRelationshipsRequest.create({
    updates: [
      touch(obj("space", "cats"), "member", sub("account", "did:plc:bob")),
      touch(obj("space", "cats"), "member", sub("space", "kittens", "member")),
      touch(obj("space", "kittens"), "member", sub("account", "did:plc:carol")),
      touch(obj("space", "cats"), "banned", sub("account", "did:plc:mallory")),
      touch(obj("space", "cats"), "member", sub("account", "did:plc:mallory")),
      touch(obj("post", POST), "space", sub("space", "cats")),
      touch(obj("post", POST), "author", sub("account", "did:plc:alice")),
      touch(obj("post", "public"), "viewer", sub("account", "*")),
      touch(obj("post", "office"), "viewer", sub("account", "did:plc:erin"),
        v1.ContextualizedCaveat.create({
          caveatName: "ip_allowed",
          context: protobuf.Struct.fromJson({ allowed: ["10.0.0.1"] }),
        })),
    ],
  }));
  written = response.writtenAt;
  assert.ok(written.token.length > 0);
});

async function check(resource, permission, subject, context) {
  const response = await client.checkPermission(v1.CheckPermissionRequest.create({
    consistency: fresh(written),
    resource,
    permission,
    subject,
    context: context && protobuf.Struct.fromJson(context),
  }));
  return response;
}

test("CheckPermission: nested spaces, bans, wildcards", async () => {
  const P = v1.CheckPermissionResponse_Permissionship;
  const view = (who) => check(obj("post", POST), "view", sub("account", who));
  assert.equal((await view("did:plc:alice")).permissionship, P.HAS_PERMISSION);
  assert.equal((await view("did:plc:carol")).permissionship, P.HAS_PERMISSION);
  assert.equal((await view("did:plc:mallory")).permissionship, P.NO_PERMISSION);
  assert.equal((await view("did:plc:zed")).permissionship, P.NO_PERMISSION);
  const open = await check(obj("post", "public"), "view", sub("account", "did:plc:zed"));
  assert.equal(open.permissionship, P.HAS_PERMISSION);
});

test("CheckPermission: caveats, partial results and context", async () => {
  const P = v1.CheckPermissionResponse_Permissionship;
  const erin = sub("account", "did:plc:erin");
  const partial = await check(obj("post", "office"), "view", erin);
  assert.equal(partial.permissionship, P.CONDITIONAL_PERMISSION);
  assert.deepEqual(partial.partialCaveatInfo.missingRequiredContext, ["ip"]);
  const inside = await check(obj("post", "office"), "view", erin, { ip: "10.0.0.1" });
  assert.equal(inside.permissionship, P.HAS_PERMISSION);
  const outside = await check(obj("post", "office"), "view", erin, { ip: "10.9.9.9" });
  assert.equal(outside.permissionship, P.NO_PERMISSION);
});

test("CheckBulkPermissions answers each item, errors per item", async () => {
  const response = await client.checkBulkPermissions(v1.CheckBulkPermissionsRequest.create({
    consistency: fresh(written),
    items: [
      v1.CheckBulkPermissionsRequestItem.create({
        resource: obj("post", POST), permission: "view", subject: sub("account", "did:plc:bob"),
      }),
      v1.CheckBulkPermissionsRequestItem.create({
        resource: obj("nope", "1"), permission: "view", subject: sub("account", "did:plc:bob"),
      }),
    ],
  }));
  assert.equal(response.pairs.length, 2);
  assert.equal(response.pairs[0].response.oneofKind, "item");
  assert.equal(response.pairs[0].response.item.permissionship,
    v1.CheckPermissionResponse_Permissionship.HAS_PERMISSION);
  assert.equal(response.pairs[1].response.oneofKind, "error");
  assert.equal(response.pairs[1].response.error.message, "object definition `nope` not found");
});

test("LookupResources and LookupSubjects", async () => {
  const resources = await client.lookupResources(v1.LookupResourcesRequest.create({
    consistency: fresh(written),
    resourceObjectType: "post",
    permission: "view",
    subject: sub("account", "did:plc:carol"),
  }));
  assert.deepEqual(resources.map((r) => r.resourceObjectId).sort(), [POST, "public"].sort());
  const subjects = await client.lookupSubjects(v1.LookupSubjectsRequest.create({
    consistency: fresh(written),
    resource: obj("space", "cats"),
    permission: "read",
    subjectObjectType: "account",
  }));
  assert.deepEqual(
    subjects.map((s) => s.subject.subjectObjectId).sort(),
    ["did:plc:bob", "did:plc:carol"],
  );
});

test("LookupResources pages resume from their cursors", async () => {
  const page = (cursor) => client.lookupResources(v1.LookupResourcesRequest.create({
    consistency: fresh(written),
    resourceObjectType: "post",
    permission: "view",
    subject: sub("account", "did:plc:carol"),
    optionalLimit: 1,
    optionalCursor: cursor,
  }));
  const first = await page(undefined);
  assert.equal(first.length, 1);
  const second = await page(first[0].afterResultCursor);
  assert.equal(second.length, 1);
  assert.notEqual(second[0].resourceObjectId, first[0].resourceObjectId);
  assert.equal((await page(second[0].afterResultCursor)).length, 0);
});

test("ReadRelationships and DeleteRelationships", async () => {
  const read = await client.readRelationships(v1.ReadRelationshipsRequest.create({
    consistency: fresh(written),
    relationshipFilter: v1.RelationshipFilter.create({ resourceType: "space",
      optionalResourceId: "cats" }),
  }));
  assert.equal(read.length, 4);
  const deleted = await client.deleteRelationships(v1.DeleteRelationshipsRequest.create({
    relationshipFilter: v1.RelationshipFilter.create({ resourceType: "space",
      optionalRelation: "banned" }),
  }));
  assert.equal(Number(deleted.relationshipsDeletedCount), 1);
  const mallory = await client.checkPermission(v1.CheckPermissionRequest.create({
    consistency: fresh(deleted.deletedAt),
    resource: obj("post", POST),
    permission: "view",
    subject: sub("account", "did:plc:mallory"),
  }));
  assert.equal(mallory.permissionship, v1.CheckPermissionResponse_Permissionship.HAS_PERMISSION);
});

test("SpiceDB's errors: status code and message", async () => {
  await assert.rejects(
    check(obj("post", POST), "nope", sub("account", "did:plc:bob")),
    (e) => e.code === 9 && e.details === "relation/permission `nope` not found under definition `post`",
  );
  const wrong = v1.NewClient("wrong", address,
    v1.ClientSecurity.INSECURE_PLAINTEXT_CREDENTIALS).promises;
  await assert.rejects(wrong.readSchema(v1.ReadSchemaRequest.create({})),
    (e) => e.code === 16);
});
