"""Misbehaviours of real BMCs, for `farm-sim --engine lean --quirk NAME`.

Each is written from the public description of the board that has it
(FreeIPMI's ipmipower(8) workaround list and its "bugs, issues and
workarounds" notes, which name the boards), not from farm's client, and is
named as FreeIPMI names the workaround that copes with it. Tests run FreeIPMI
against each quirk with and without its -W flag to show the quirk is the one
that flag was made for.

- intel20 (Intel SE7520AF2 with the Intel Server Management Module): the
  BMC pads the user name with NULs to 16 bytes when it computes RAKP 2's code
  and the session key, and checks RAKP 3's code with the role's name-only
  lookup bit cleared.
- supermicro20 (Supermicro H8QME, Peppercon firmware): RAKP 2's payload is
  one byte longer than it should be (a byte after the key exchange code).
- sun20 (Sun Fire 4100/4200/4500 ILOM): RAKP 2's key exchange code one byte
  too long (HMAC-SHA1 suites), and keys hashed as opensesspriv below.
- opensesspriv (Sun Fire X4150, Inventec 5441/Dell Xanadu II, Supermicro
  X8DTH/X8DTG, Intel S5500WBV): the BMC hashes the keys with the privilege
  level of the Open Session request instead of RAKP 1's (a client asking for
  "highest level" (0) there then fails RAKP 2's check).
- authcap (Asus P5M2/RS162-E4, Intel SR1520ML, Sun Fire X4150/X4450): Get
  Channel Authentication Capabilities reports the user name capabilities and
  the K_g status wrongly (no non-null user names, a K_g key in use).
- nochecksumcheck: IPMI responses inside the session carry a wrong
  checksum (the packet is otherwise valid and authenticated).
"""

QUIRKS = ("intel20", "supermicro20", "sun20", "opensesspriv", "authcap", "nochecksumcheck")


def parse(text):
    """The quirk names of `--quirk a,b` (ValueError naming an unknown one)."""
    names = tuple(dict.fromkeys(q.strip() for q in (text or "").split(",") if q.strip()))
    unknown = [q for q in names if q not in QUIRKS]
    if unknown:
        raise ValueError(f"unknown quirk(s) {', '.join(unknown)}; known: {', '.join(QUIRKS)}")
    return frozenset(names)


def hashing_role(role, open_privilege, quirks):
    """The role byte the BMC puts in its hashes: RAKP 1's, or with the Open
    Session privilege in its place (opensesspriv, sun20)."""
    if quirks & {"opensesspriv", "sun20"}:
        return (role & 0xF0) | (open_privilege & 0x0F)
    return role


def hashing_name(username, quirks):
    """The user name in the BMC's RAKP 2 code and session key (intel20 pads)."""
    return username.ljust(16, b"\0") if "intel20" in quirks else username


def rakp3_role(role, quirks):
    """The role byte the BMC checks RAKP 3's code with (intel20 clears the
    name-only lookup bit)."""
    return role & ~0x10 if "intel20" in quirks else role


def rakp2_code(code, quirks):
    """RAKP 2's key exchange code as sent (one byte too many on some boards)."""
    return code + b"\0" if quirks & {"supermicro20", "sun20"} else code


def auth_capabilities(body, quirks):
    """Get Channel Authentication Capabilities' answer, misreported (authcap):
    K_g status 'non-zero' and no user name login of any kind."""
    if "authcap" not in quirks:
        return body
    return body[:2] + bytes([0x20]) + body[3:]


def response_checksum(message, quirks):
    """An IPMI response message, its last checksum broken (nochecksumcheck)."""
    if "nochecksumcheck" not in quirks:
        return message
    return message[:-1] + bytes([(message[-1] + 1) & 0xFF])
