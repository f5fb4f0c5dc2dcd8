// Flock browser client: logs in to an appliance through the Flock rendezvous server over a
// websocket, then answers the appliance's WebRTC offer and trickles ICE candidates both ways.
// Plain ES module, no dependencies.
//
//   const s = await FlockSession.open(`ws://${location.host}/ws`, "home");
//   // s.personas: [{id, name}, …], or null when the appliance wants a user name
//   await s.login(s.personas ? s.personas[0].id : "bob", "pwd:secret");
//   const channel = await s.channel; // an open RTCDataChannel
//
// To show the steps as they happen, pass `{ onsignal: (direction, message) => … }` to open().

/**
 * @typedef {{id: string, name: string}} Persona
 */

/** An error reported by the server (`code` is its code), or by this client. */
export class FlockError extends Error {
  /**
   * @param {string} code server codes (unknown-appliance, bad-credentials, timeout, …), or
   *   "rejected" (wrong credentials, retry allowed), "closed" (websocket closed early),
   *   "webrtc" (the peer connection failed)
   * @param {string} [message]
   * @param {number} [attemptsLeft] for "rejected"
   */
  constructor(code, message, attemptsLeft) {
    super(message || code);
    this.name = "FlockError";
    this.code = code;
    this.attemptsLeft = attemptsLeft;
  }
}

export class FlockSession {
  /**
   * Connects and chooses the appliance. Resolves once the server said how to log in.
   * @param {string} wsUrl e.g. `ws://host:port/ws`
   * @param {string} appliance
   * @param {RTCConfiguration} [rtcConfig] for the RTCPeerConnection (e.g. iceServers)
   * @param {{onsignal?: (direction: "in" | "out", message: object) => void}} [options]
   *   `onsignal` sees every message of the session as it is received ("in") or sent ("out"),
   *   from this `open` on; a `login` is shown without its credential
   * @returns {Promise<FlockSession>} `.personas` is the list to pick from, or null when
   *   credentials are required (login with the user name as persona)
   */
  static async open(wsUrl, appliance, rtcConfig = {}, options = {}) {
    const s = new FlockSession(wsUrl, rtcConfig);
    if (options.onsignal) s.#onsignal = options.onsignal;
    try {
      await s.#request({ type: "open", appliance });
    } catch (e) {
      s.close();
      throw e;
    }
    return s;
  }

  /** @type {Persona[] | null} */
  personas = null;
  /** @type {RTCPeerConnection} */
  pc;
  /** Resolves with the data channel the appliance opened, once it is open.
   * @type {Promise<RTCDataChannel>} */
  channel;
  /** Called with a FlockError that arrives when no call is pending (e.g. after login).
   * @type {(err: FlockError) => void} */
  onerror = () => {};

  #ws;
  #pending = null; // {resolve, reject} of the open() or login() in flight
  #queued = []; // remote candidates that arrived before the offer
  #haveOffer = false;
  #channelDone;
  #opened; // the websocket's open, so a send never races it
  #fatal = null; // the error that ended the session
  #onsignal = () => {};

  /** @private use FlockSession.open */
  constructor(wsUrl, rtcConfig) {
    this.#ws = new WebSocket(wsUrl);
    this.#opened = new Promise((resolve) => this.#ws.addEventListener("open", resolve, { once: true }));
    this.#ws.onmessage = (e) => this.#onMessage(e.data);
    this.#ws.onclose = (e) => this.#fail(this.#fatal || new FlockError("closed", `websocket closed (${e.code})`));
    this.pc = new RTCPeerConnection(rtcConfig);
    this.channel = new Promise((resolve, reject) => (this.#channelDone = { resolve, reject }));
    this.channel.catch(() => {}); // callers who never await it must not see an unhandled rejection
    this.pc.onicecandidate = ({ candidate: c }) =>
      this.#send(c ? { type: "candidate", candidate: c.candidate, sdpMid: c.sdpMid } : { type: "end-of-candidates" });
    this.pc.ondatachannel = ({ channel }) => {
      if (channel.readyState === "open") this.#channelDone.resolve(channel);
      else channel.addEventListener("open", () => this.#channelDone.resolve(channel), { once: true });
    };
    this.pc.onconnectionstatechange = () => {
      if (this.pc.connectionState === "failed")
        this.#fail(new FlockError("webrtc", "peer connection failed: no pair of the candidates exchanged connects"));
    };
  }

  /**
   * Logs in; may be called again after a "rejected" error.
   * @param {string} persona a persona id, or the user name when credentials were required
   * @param {string} credential e.g. "pwd:" + password
   * @returns {Promise<void>} resolves when accepted; rejects with a FlockError
   *   (code "rejected" with `attemptsLeft`, or the server's error code)
   */
  login(persona, credential) {
    return this.#request({ type: "login", persona, credential });
  }

  /** Closes the websocket and the peer connection. */
  close() {
    this.#ws.onclose = null;
    this.#ws.close();
    this.pc.close();
  }

  #request(msg) {
    if (this.#fatal) return Promise.reject(this.#fatal);
    if (this.#ws.readyState > WebSocket.OPEN) return Promise.reject(new FlockError("closed", "websocket is closed"));
    if (this.#pending) return Promise.reject(new FlockError("busy", "a request is already pending"));
    return new Promise((resolve, reject) => {
      this.#pending = { resolve, reject };
      this.#send(msg);
    });
  }

  async #send(msg) {
    await this.#opened;
    if (this.#ws.readyState !== WebSocket.OPEN) return;
    this.#ws.send(JSON.stringify(msg));
    this.#signal("out", msg.type === "login" ? { type: "login", persona: msg.persona } : msg);
  }

  #signal(direction, msg) {
    try {
      this.#onsignal(direction, msg);
    } catch (e) {
      console.error("onsignal:", e); // the caller's bug must not break the session
    }
  }

  #settle(err) {
    const p = this.#pending;
    this.#pending = null;
    if (p) err ? p.reject(err) : p.resolve();
    return p !== null;
  }

  #fail(err) {
    // Once the offer is in, the server closing the websocket is the normal end of signalling.
    if (err.code === "closed" && this.#haveOffer) return;
    const first = !this.#fatal;
    this.#fatal ??= err;
    this.#channelDone.reject(err);
    if (!this.#settle(err) && first) this.onerror(err);
  }

  async #onMessage(text) {
    let m;
    try {
      m = JSON.parse(text);
    } catch {
      return this.#fail(new FlockError("malformed", "server sent invalid JSON"));
    }
    this.#signal("in", m);
    try {
      switch (m.type) {
        case "personas":
          this.personas = m.personas;
          return this.#settle();
        case "credentials-required":
          this.personas = null;
          return this.#settle();
        case "accepted":
          return this.#settle();
        case "rejected":
          return this.#settle(new FlockError("rejected", "credentials rejected", m.attempts_left));
        case "error": // the server closes next; onclose then finds #fatal set
          return this.#fail(new FlockError(m.code, m.message));
        case "offer":
          return await this.#onOffer(m.sdp);
        case "candidate":
        case "end-of-candidates":
          // Candidates may overtake the offer: keep them until the remote description is set.
          if (!this.#haveOffer) return this.#queued.push(m);
          return await this.#addCandidate(m);
      }
    } catch (e) {
      this.#fail(new FlockError("webrtc", String(e)));
    }
  }

  async #onOffer(sdp) {
    await this.pc.setRemoteDescription({ type: "offer", sdp });
    this.#haveOffer = true;
    for (const m of this.#queued.splice(0)) await this.#addCandidate(m);
    await this.pc.setLocalDescription(await this.pc.createAnswer());
    this.#send({ type: "answer", sdp: this.pc.localDescription.sdp });
  }

  async #addCandidate(m) {
    if (m.type === "end-of-candidates") return this.pc.addIceCandidate().catch(() => {}); // a hint only
    const mid = m.sdpMid ?? null; // without a mid, the candidate belongs to the first (only) m-line
    await this.pc.addIceCandidate({ candidate: m.candidate, sdpMid: mid, sdpMLineIndex: mid === null ? 0 : null });
  }
}
