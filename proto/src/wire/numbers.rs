//! Every method and attribute number Flock takes from STUN's private ranges, in one table
//! (docs/PROTOCOL.md, "Numbers"). Error codes stay with the messages that answer with them.

/// Flock methods (STUN method numbers, from the top of the 12-bit space).
pub mod method {
    use crate::stun::Method;

    // Registration: appliance ↔ server.
    /// Appliance → server: bind a name to a key at the source address.
    pub const REGISTER: Method = Method(0xF01);
    /// Appliance → server: keep a registration alive with a token.
    pub const KEEPALIVE: Method = Method(0xF02);
    /// Server → appliance's registered address: prove you still hold the key.
    pub const CHECK: Method = Method(0xF03);

    // Log-in (after the registration methods in the same private range).
    /// Flock → appliance: a chunk of the persona list.
    pub const PERSONAS: Method = Method(0xF04);
    /// Flock → appliance: a log-in attempt.
    pub const CONNECT: Method = Method(0xF05);
    /// Either way: one item of a session's signalling stream.
    pub const SIGNAL: Method = Method(0xF06);

    // Peer protocol between the servers of a flock (leaving room for appliance-facing ones).
    /// Serving server → owner: where is this appliance?
    pub const LOOKUP: Method = Method(0xF10);
    /// Either way between serving server and owner: one log-in datagram, wrapped.
    pub const RELAY: Method = Method(0xF11);
}

/// Flock attributes (comprehension-required range, so a STUN peer that does not know them
/// refuses the message rather than ignoring what it cannot read).
pub mod attr {
    // Registration.
    /// Appliance name as sent (normalized by the receiver), 1..=255 bytes.
    pub const NAME: u16 = 0x7F01;
    /// Ed25519 public key, 32 bytes.
    pub const PUBLIC_KEY: u16 = 0x7F02;
    /// Milliseconds since the Unix epoch, u64 big-endian.
    pub const TIMESTAMP: u16 = 0x7F03;
    /// Ed25519 signature, 64 bytes.
    pub const SIGNATURE: u16 = 0x7F04;
    /// Registration nonce issued by the server, 16 bytes (expiry u32 + MAC 12).
    pub const NONCE: u16 = 0x7F05;
    /// Keep-alive token issued by the server, 20 bytes (expiry u32 + MAC 16).
    pub const TOKEN: u16 = 0x7F06;
    /// SHA-256 fingerprint of the appliance's public key, 32 bytes.
    pub const IDENTITY: u16 = 0x7F07;
    /// Keep-alive interval the server asks for, milliseconds, u32 big-endian.
    pub const KEEPALIVE_INTERVAL: u16 = 0x7F08;
    /// Random challenge of a CHECK, 16 bytes.
    pub const CHALLENGE: u16 = 0x7F09;

    // Log-in.
    /// Session nonce, 16 bytes.
    pub const SESSION: u16 = 0x7F0A;
    /// Byte offset of a chunk, u32.
    pub const OFFSET: u16 = 0x7F0B;
    /// Total bytes of the chunked value, u32.
    pub const TOTAL: u16 = 0x7F0C;
    /// Chunk bytes, or a candidate line.
    pub const DATA: u16 = 0x7F0D;
    /// SHA-256 of the whole persona list, 32 bytes.
    pub const CHECKSUM: u16 = 0x7F0E;
    /// u32 flags; bit 0 in a PERSONAS answer: credentials must be entered separately.
    pub const FLAGS: u16 = 0x7F0F;
    /// Persona id (or user name), UTF-8, at most 255 bytes.
    pub const PERSONA: u16 = 0x7F10;
    /// Credential, at most 512 bytes (`pwd:…`, `token:…`; opaque to the flock).
    pub const CREDENTIAL: u16 = 0x7F11;
    /// Position in a session's signalling stream, u32, from 0 per direction.
    pub const SEQ: u16 = 0x7F12;
    /// What a SIGNAL carries, u32: 1 SDP chunk, 2 candidate, 3 end-of-candidates.
    pub const SIGNAL_KIND: u16 = 0x7F13;
    /// Media id of a candidate, UTF-8, at most 64 bytes.
    pub const MID: u16 = 0x7F14;

    // Peer protocol.
    /// Sender's index in the flock's server list, u32.
    pub const FROM_SERVER: u16 = 0x7F20;
    /// SHA-256 of the sender's canonical membership list, 32 bytes.
    pub const DIGEST: u16 = 0x7F21;
    /// Remaining lifetime of a registration, u32 milliseconds.
    pub const EXPIRY: u16 = 0x7F22;
    /// A whole log-in datagram (RELAY), 20..=1200 bytes.
    pub const DATAGRAM: u16 = 0x7F23;
    /// First 12 bytes of the appliance's identity (what the registration table keeps).
    pub const IDENTITY_PREFIX: u16 = 0x7F24;
}
