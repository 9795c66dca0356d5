# microsmtp: address literals, [192.0.2.1] and [IPv6:2001:db8::1], for message.check().
# MIT licence. Loaded the first time a value holds one (a recipient, the sender, the
# client_domain): a board that names its server and mailboxes by host name never does.


def valid(data, sep, end):
    """data[sep+1:end] is [IPv4] or [IPv6:...] (with "::" and an IPv4 tail): RFC 5321
    §4.1.3."""
    if data[end - 1] != 93:
        return False
    # Bytes, not str: a short str literal would cost a name on a board's heap.
    v4 = bytes(data[sep + 2:end - 1])
    if v4[:5].upper() == b"IPV6:":
        halves = v4[5:].split(b"::")
        if len(halves) > 2:
            return False
        v4 = None
        groups = 0
        for h in range(len(halves)):
            parts = halves[h].split(b":") if halves[h] else ()
            for k in range(len(parts)):
                p = parts[k]
                if p.find(b".") >= 0 and h == len(halves) - 1 and k == len(parts) - 1:
                    v4 = p  # the last 32 bits as an IPv4 address
                    groups += 2
                elif 0 < len(p) < 5:
                    for c in p:
                        if not (48 <= c <= 57 or 65 <= c <= 70 or 97 <= c <= 102):
                            return False
                    groups += 1
                else:
                    return False
        if groups != 8 if len(halves) == 1 else groups > 6:
            return False
        if v4 is None:
            return True
    parts = v4.split(b".")
    if len(parts) != 4:
        return False
    for p in parts:
        if not 0 < len(p) < 4 or not p.isdigit() or int(p) > 255:
            return False
    return True
