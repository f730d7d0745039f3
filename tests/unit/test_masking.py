from __future__ import annotations

import base64
import json
import random
import re
import time
from urllib.parse import quote, quote_plus, unquote, unquote_plus

import pytest

from apiary.core.secretvalue import unmaskable
from apiary.drone.masking import Masker

M = "********"
TOKEN = "ghp_9f8e7d6c5b4a"
KEY = "-----BEGIN KEY-----\nMIIBOgIBAAJBAKj34GkxFhD9\n  0ab  \nQbDhZ2v8Y6hR5u1e\n-----END KEY-----\n"
ODD = "p>?ss~w0rd!"  # its base64 holds '+', '/' and '=', so all four base64 forms differ


def streamed(masker: Masker, chunks: list[str]) -> list[str]:
    """What a stream emits for `chunks`, feed by feed, then the flush."""
    stream = masker.stream()
    return [stream.feed(chunk) for chunk in chunks] + [stream.flush()]


def reference_mask(masker: Masker, text: str) -> str:
    """Slow and obvious: mask each run of overlapping occurrences of any form as one."""
    spans = sorted((i, i + len(form)) for form in masker.forms
                   for i in range(len(text)) if text.startswith(form, i))
    out, pos, run = [], 0, None
    for start, end in spans:
        if run is not None and start < run[1]:
            run = (run[0], max(run[1], end))
            continue
        if run is not None:
            out += [text[pos:run[0]], M]
            pos = run[1]
        run = (start, end)
    if run is not None:
        out += [text[pos:run[0]], M]
        pos = run[1]
    return "".join(out) + text[pos:]


# -- whole strings ----------------------------------------------------------------------

def test_a_secret_is_masked_wherever_it_appears() -> None:
    masker = Masker([TOKEN])
    assert masker.mask(f"token={TOKEN}\n{TOKEN}{TOKEN} end") == f"token={M}\n{M}{M} end"


def test_a_secret_in_the_command_shown_is_masked() -> None:
    masker = Masker([TOKEN, "hunter22"])
    screencmd = f"curl -H 'Authorization: Bearer {TOKEN}' -u bob:hunter22 https://x.test"
    assert masker.mask(screencmd) == f"curl -H 'Authorization: Bearer {M}' -u bob:{M} https://x.test"


def test_a_multi_line_secret_is_masked_whole_line_by_line_and_with_crlf() -> None:
    masker = Masker([KEY])
    assert masker.mask(f"key:\n{KEY}done") == f"key:\n{M}done"
    assert masker.mask(f"> {KEY.replace(chr(10), chr(13) + chr(10))}<") == f"> {M}<"
    for line in ("MIIBOgIBAAJBAKj34GkxFhD9", "QbDhZ2v8Y6hR5u1e", "-----END KEY-----"):
        assert masker.mask(f"line: {line} ok") == f"line: {M} ok"
    assert masker.mask("  0ab  ") == "  0ab  "  # a line under 4 chars is not masked on its own


@pytest.mark.parametrize("encode", [base64.b64encode, base64.urlsafe_b64encode])
@pytest.mark.parametrize("padded", [True, False])
def test_base64_forms_of_a_secret_are_masked(encode, padded: bool) -> None:
    encoded = encode(ODD.encode()).decode()
    encoded = encoded if padded else encoded.rstrip("=")
    assert Masker([ODD]).mask(f"auth: {encoded};") == f"auth: {M};"


def test_url_encoded_forms_of_a_secret_are_masked() -> None:
    value = "p@ss w/rd&x=1"
    masker = Masker([value])
    assert masker.mask(f"https://x.test/?p={quote(value, safe='')}") == f"https://x.test/?p={M}"
    assert masker.mask(f"p={quote_plus(value)}&q=2") == f"p={M}&q=2"


def test_a_secret_inside_another_is_masked_as_part_of_the_longer_one() -> None:
    masker = Masker(["secret", "topsecret123"])
    assert masker.mask("a topsecret123 b secret c") == f"a {M} b {M} c"


def test_overlapping_secrets_are_masked_as_one_run_with_nothing_left_showing() -> None:
    masker = Masker(["abcdef", "defghi"])
    assert masker.mask("xx abcdefghi yy") == f"xx {M} yy"
    assert masker.mask("abcdefabcdef") == f"{M}{M}"  # adjacent, not overlapping: two masks


def test_short_and_blank_values_are_ignored() -> None:
    masker = Masker(["ab", "", "x", "   ", "\n\n\n"])
    assert masker.forms == ()
    assert masker.mask("ab x   \n\n\n") == "ab x   \n\n\n"
    assert Masker(["abc"]).mask("abcd") == f"{M}d"  # three characters are enough


def test_a_custom_mask_is_used() -> None:
    assert Masker([TOKEN], mask="[secret]").mask(f"t={TOKEN}") == "t=[secret]"


def test_masking_agrees_with_a_naive_reference_on_random_text() -> None:
    rng = random.Random(7)
    for _ in range(300):
        values = ["".join(rng.choices("abc", k=rng.randint(3, 6))) for _ in range(rng.randint(1, 3))]
        masker = Masker(values)
        text = "".join(rng.choices("abc\n", k=rng.randint(0, 40)))
        assert masker.mask(text) == reference_mask(masker, text), (values, text)


# -- streams ----------------------------------------------------------------------------

def test_a_secret_split_across_two_chunks_is_never_emitted_unmasked() -> None:
    masker = Masker([TOKEN, KEY, ODD])
    text = f"start {TOKEN} mid {KEY} b64 {base64.b64encode(ODD.encode()).decode()} end\n"
    whole = masker.mask(text)
    assert TOKEN not in whole and "MIIBOgIBAAJBAKj34GkxFhD9" not in whole
    for split in range(len(text) + 1):
        out = streamed(masker, [text[:split], text[split:]])
        assert "".join(out) == whole, split
        assert not any(form in piece for piece in out for form in masker.forms), split


def test_a_secret_fed_one_character_at_a_time_is_masked() -> None:
    masker = Masker([TOKEN, "abcdef", "defghi"])
    text = f"x {TOKEN} y abcdefghi z"
    assert "".join(streamed(masker, list(text))) == masker.mask(text) == f"x {M} y {M} z"


def test_any_chunking_gives_the_same_output_as_masking_the_whole_text() -> None:
    rng = random.Random(11)
    for _ in range(300):
        values = ["".join(rng.choices("abc", k=rng.randint(3, 7))) for _ in range(rng.randint(1, 3))]
        masker = Masker(values)
        text = "".join(rng.choices("abc\n", k=rng.randint(0, 60)))
        cuts = sorted(rng.sample(range(len(text) + 1), k=min(len(text) + 1, rng.randint(0, 6))))
        chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
        assert "".join(streamed(masker, chunks)) == masker.mask(text), (values, chunks)


def test_output_without_secrets_passes_through_without_delay() -> None:
    stream = Masker([TOKEN]).stream()
    assert stream.feed("compiling foo.c\n") == "compiling foo.c\n"
    assert stream.feed("linking, no newline yet") == "linking, no newline yet"
    assert stream.pending == 0
    assert stream.flush() == ""


def test_only_a_tail_that_could_start_a_secret_is_held_back_until_the_next_chunk() -> None:
    masker = Masker([TOKEN])
    stream = masker.stream()
    assert stream.feed("token: ghp_9f") == "token: "
    assert stream.pending == len("ghp_9f")
    assert stream.feed("8e7d6c5b4a\n") == f"{M}\n"
    assert stream.pending == 0
    assert stream.feed("ghp_9") == ""  # the command ends here: the tail was harmless after all
    assert stream.flush() == "ghp_9"


def test_never_more_than_the_longest_form_minus_one_is_held_back() -> None:
    masker = Masker([TOKEN, KEY])
    stream = masker.stream()
    longest = masker.forms[0]  # the base64 of the key
    assert stream.feed("a" * 100 + longest[:-1]) == "a" * 100
    assert stream.pending == len(longest) - 1 == masker.longest - 1
    assert stream.feed(longest[-1]) == M


def test_a_masker_without_secrets_changes_nothing() -> None:
    masker = Masker([])
    stream = masker.stream()
    assert masker.mask(f"x {TOKEN}") == f"x {TOKEN}"
    assert stream.feed("ghp_") == "ghp_" and stream.pending == 0 and stream.flush() == ""


def test_masking_ten_megabytes_is_fast(capsys: pytest.CaptureFixture[str]) -> None:
    rng = random.Random(3)
    secrets = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz0123456789+/", k=32)) for _ in range(5)]
    masker = Masker(secrets)
    line = "[ 42%] Building CXX object src/CMakeFiles/core.dir/parser.cpp.o -O2 -Wall\n"
    text = line * (10_000_000 // len(line)) + secrets[0] + "\n"
    started = time.perf_counter()
    whole = masker.mask(text)
    mask_rate = len(text) / 1e6 / (time.perf_counter() - started)
    chunk = 65536
    started = time.perf_counter()
    stream = masker.stream()
    out = [stream.feed(text[i:i + chunk]) for i in range(0, len(text), chunk)] + [stream.flush()]
    stream_rate = len(text) / 1e6 / (time.perf_counter() - started)
    assert whole.endswith(f"{M}\n") and "".join(out) == whole
    empty = Masker([])
    started = time.perf_counter()
    empty.mask(text)
    empty_rate = len(text) / 1e6 / (time.perf_counter() - started)
    with capsys.disabled():
        print(f"\nmasking 10 MB, 5 secrets: mask() {mask_rate:.0f} MB/s, stream {stream_rate:.0f} MB/s,"
              f" no secrets {empty_rate:.0f} MB/s")


# -- every form a job may print, at any position, for random secrets -------------------------------

ALPHABET = "abcXYZ0189-_.~/+=!\"\\' :@?&%#é€漢\t"


def _printed_forms(secret: str, rng: random.Random) -> dict[str, str]:
    """`secret` as jobs print it, each inside longer output: what a job would run to print it."""
    raw = secret.encode()
    user = "ci-bot"[: rng.randint(0, 6)]
    forms = {}
    for prefix_len in range(3):
        prefix = bytes(rng.randrange(256) for _ in range(prefix_len))
        suffix = bytes(rng.randrange(256) for _ in range(rng.randint(0, 4)))
        for name, encode in (("b64", base64.b64encode), ("b64url", base64.urlsafe_b64encode)):
            text = encode(prefix + raw + suffix).decode()
            forms[f"{name}@{prefix_len}"] = text
            forms[f"{name}@{prefix_len} unpadded"] = text.rstrip("=")
    forms["basic auth"] = "Authorization: Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()
    forms["hex"] = "0x" + raw.hex() + "ff"
    forms["HEX"] = raw.hex().upper()
    specials = sorted({c for c in secret if c.isascii() and not c.isalnum() and c not in "-._~"})
    safe = "".join(rng.sample(specials, rng.randint(0, len(specials)))) if specials else ""
    encoded = quote(secret, safe=safe)
    forms[f"percent safe={safe!r}"] = "https://example.com/?token=" + encoded + "&x=1"
    forms["percent lower"] = re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), quote(secret, safe=""))
    forms["form plus"] = "a=1&p=" + quote_plus(secret)
    forms["json"] = json.dumps({"password": secret, "n": 1})
    forms["json unicode"] = json.dumps({"password": secret}, ensure_ascii=False)
    forms["json slash"] = json.dumps(secret).replace("/", "\\/")
    forms["json every char"] = "".join(f"\\u{ord(c):04x}" for c in secret if ord(c) < 0x10000)
    forms["json in json"] = json.dumps(json.dumps({"p": secret}))
    forms["percent every byte"] = "".join(f"%{b:02X}" for b in raw)
    return forms


def _revealed(secret: str, masked: str) -> list[str]:
    """Ways `masked` still gives `secret` away: as text, hex, percent-encoded or base64 at any offset."""
    found = []
    raw = secret.encode()
    if secret in masked or secret.replace("/", "\\/") in masked:
        found.append("plain")
    if raw.hex() in masked.lower():
        found.append("hex")
    if secret in unquote(masked) or secret in unquote_plus(masked):
        found.append("percent")
    unescaped = masked
    for _ in range(2):  # JSON inside JSON
        unescaped = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), unescaped)
        unescaped = re.sub(r'\\(["\\/])', r"\1", unescaped)
        if secret in unescaped:
            found.append("json")
    for chunk in re.findall(r"[A-Za-z0-9+/_\-]{4,}={0,2}", masked):
        for start in range(4):
            piece = chunk[start:]
            piece = piece[: len(piece) // 4 * 4] or piece
            for decode in (base64.b64decode, base64.urlsafe_b64decode):
                try:
                    if raw in decode(piece + "=" * (-len(piece) % 4)):
                        found.append("base64")
                except ValueError:
                    pass
    return sorted(set(found))


@pytest.mark.parametrize("seed", range(60))
def test_no_listed_form_of_a_random_secret_survives_masking(seed: int) -> None:
    rng = random.Random(seed)
    secret = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(6, 24)))
    masker = Masker([secret])
    for name, text in _printed_forms(secret, rng).items():
        line = f"step output {rng.randint(0, 99)}: {text} done\n"
        masked = masker.mask(line)
        assert _revealed(secret, masked) == [], (name, secret, line, masked)
        assert "".join(streamed(masker, [line[:7], line[7:20], line[20:]])) == masked


def test_the_check_finds_what_an_older_masker_let_through() -> None:
    secret = "hunter2-correct-horse"
    assert _revealed(secret, base64.b64encode(b"ci-bot:" + secret.encode()).decode()) == ["base64"]
    assert _revealed("hunter2 correct/horse", quote("hunter2 correct/horse", safe="").lower()) == ["percent"]


def test_what_cannot_be_masked_is_documented_not_pretended() -> None:
    masker = Masker(["hunter2-correct-horse"])
    assert masker.mask("esroh-tcerroc-2retnuh") == "esroh-tcerroc-2retnuh"  # reversed: a known limit


@pytest.mark.parametrize(("value", "refused"), [
    ("xq", "at least 3 characters"), ("", "at least 3 characters"), ("   ", "not only whitespace"),
    ("\n\t ", "not only whitespace"), ("abc", None), (" a ", None),
])
def test_a_value_the_masker_would_ignore_cannot_be_a_secret(value: str, refused: str | None) -> None:
    problem = unmaskable(value)
    assert (problem is None) if refused is None else (refused in problem)
    if refused is None:
        assert Masker([value]).mask(f"[{value}]") == "[********]"
    else:
        assert Masker([value]).mask(f"[{value}]") == f"[{value}]"  # why it is refused: it would show
