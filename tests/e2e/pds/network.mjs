// A local atproto network for policyd's ingest end-to-end test: @atproto/dev-env's
// TestNetworkNoAppView (a PLC directory and a PDS, devMode, .test handles, no crawlers),
// every listener on 127.0.0.1, driven over stdin/stdout with @atproto/api.
//
// stdout: one JSON line when ready ({ready, pdsUrl, plcUrl, firehose}), then one JSON line
// answering each command read from stdin, one JSON object a line:
//   {"op": "account", "handle": "alice"}                       -> {did, handle}
//   {"op": "create", "as": DID, "collection": NSID, "record": {...}} -> {uri, rkey}
//   {"op": "delete", "as": DID, "collection": NSID, "rkey": RKEY}    -> {ok}
//   {"op": "deleteAccount", "as": DID}                          -> {ok}
// The network stops when stdin closes. Logs go to stderr.
import dns from 'node:dns'
import net from 'node:net'
import readline from 'node:readline'

// Loopback only: servers that listen(port) without a host get 127.0.0.1.
const listen = net.Server.prototype.listen
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === 'number' && (args.length === 1 || typeof args[1] === 'function')) {
    args.splice(1, 0, '127.0.0.1')
  } else if (args[0] && typeof args[0] === 'object' && args[0].port !== undefined && !args[0].host) {
    args[0] = { ...args[0], host: '127.0.0.1' }
  }
  return listen.apply(this, args)
}
dns.setDefaultResultOrder('ipv4first') // "localhost" -> 127.0.0.1

const { TestNetworkNoAppView } = await import('@atproto/dev-env')
const { AtpAgent } = await import('@atproto/api')

const network = await TestNetworkNoAppView.create({
  pds: { hostname: 'localhost', devMode: true, crawlers: [] },
})
const pdsUrl = network.pds.url
const agents = new Map()
const passwords = new Map()

const handlers = {
  async account({ handle }) {
    const agent = new AtpAgent({ service: pdsUrl })
    const password = `pw-${handle}`
    const res = await agent.createAccount({
      handle: `${handle}.test`,
      email: `${handle}@example.test`,
      password,
    })
    agents.set(res.data.did, agent)
    passwords.set(res.data.did, password)
    return { did: res.data.did, handle: res.data.handle }
  },
  async create({ as, collection, record }) {
    const agent = agents.get(as)
    const res = await agent.com.atproto.repo.createRecord({
      repo: as,
      collection,
      record: { createdAt: new Date().toISOString(), ...record },
    })
    return { uri: res.data.uri, rkey: res.data.uri.split('/').pop() }
  },
  async delete({ as, collection, rkey }) {
    await agents.get(as).com.atproto.repo.deleteRecord({ repo: as, collection, rkey })
    return { ok: true }
  },
  async deleteAccount({ as }) {
    const agent = agents.get(as)
    await agent.com.atproto.server.requestAccountDelete()
    const token = await network.pds.ctx.accountManager.db.db
      .selectFrom('email_token')
      .select('token')
      .where('did', '=', as)
      .where('purpose', '=', 'delete_account')
      .executeTakeFirstOrThrow()
    await agent.com.atproto.server.deleteAccount({
      did: as,
      password: passwords.get(as),
      token: token.token,
    })
    return { ok: true }
  },
}

const firehose = pdsUrl.replace('http://localhost', 'ws://127.0.0.1')
console.log(JSON.stringify({ ready: true, pdsUrl, plcUrl: network.plc.url, firehose }))

const lines = readline.createInterface({ input: process.stdin })
for await (const line of lines) {
  if (!line.trim()) continue
  let answer
  try {
    const command = JSON.parse(line)
    answer = await handlers[command.op](command)
  } catch (err) {
    answer = { error: String(err?.message ?? err) }
  }
  console.log(JSON.stringify(answer))
}
await network.close()
process.exit(0)
