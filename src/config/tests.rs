use super::*;

#[test]
fn defaults_match_the_contract() {
    let c = Config::default();
    assert_eq!(c.sip.listen.to_string(), "127.0.0.1:5060");
    assert_eq!(c.api.listen.to_string(), "127.0.0.1:8080");
    assert_eq!((c.media.rtp_port_min, c.media.rtp_port_max), (20000, 29999));
    assert_eq!(c.storage.data_dir, PathBuf::from("./confab-data"));
    assert_eq!(c.sip.access_user, "conference");
    assert!(c.validate().is_ok());
    assert_eq!(Config::from_toml("").unwrap(), c);
}

#[test]
fn a_full_file_parses() {
    let c = Config::from_toml(
        r#"
[sip]
listen = "0.0.0.0:5070"
trusted = ["10.0.0.0/8", "192.168.1.7"]
access_user = "meet"
outbound_proxy = "sip:gw.example.net:5060"

[api]
listen = "0.0.0.0:9000"
token = "s3cret"

[media]
rtp_port_min = 30000
rtp_port_max = 30999

[mixer]
threads = 2
max_talkers = 4

[log]
format = "json"
"#,
    )
    .unwrap();
    assert_eq!(c.sip.listen.port(), 5070);
    assert!(c.sip.trusted[0].contains("10.1.2.3".parse().unwrap()));
    assert!(!c.sip.trusted[1].contains("192.168.1.8".parse().unwrap()));
    assert_eq!(c.log.format, LogFormat::Json);
}

#[test]
fn unknown_keys_are_named_with_their_line() {
    let e = Config::from_toml("[sip]\nlisten = \"127.0.0.1:5060\"\nlisen = \"x\"\n").unwrap_err();
    assert_eq!(e.line, Some(3), "{e}");
    assert_eq!(e.key.as_deref(), Some("sip.lisen"), "{e}");
    assert!(e.message.contains("unknown field"), "{e}");
    let e = Config::from_toml("[sipp]\n").unwrap_err();
    assert_eq!((e.line, e.key.as_deref()), (Some(1), Some("sipp")), "{e}");
}

#[test]
fn bad_values_are_named_with_their_line() {
    let e = Config::from_toml("\n[api]\nlisten = \"nowhere\"\n").unwrap_err();
    assert_eq!(
        (e.line, e.key.as_deref()),
        (Some(3), Some("api.listen")),
        "{e}"
    );
    let e = Config::from_toml("[sip]\ntrusted = [\"10.0.0.0/33\"]\n").unwrap_err();
    assert_eq!(
        (e.line, e.key.as_deref()),
        (Some(2), Some("sip.trusted")),
        "{e}"
    );
    assert!(e.message.contains("prefix"), "{e}");
}

#[test]
fn exposed_api_needs_a_token() {
    let e = Config::from_toml("[api]\nlisten = \"0.0.0.0:8080\"\n").unwrap_err();
    assert_eq!(e.key.as_deref(), Some("api.token"));
    assert!(Config::from_toml("[api]\nlisten = \"0.0.0.0:8080\"\ntoken = \"t\"\n").is_ok());
    assert!(Config::from_toml("[api]\nlisten = \"[::1]:8080\"\n").is_ok());
}

#[test]
fn ranges_are_checked() {
    let e = Config::from_toml("[media]\nrtp_port_min = 3000\nrtp_port_max = 2000\n").unwrap_err();
    assert_eq!(
        (e.line, e.key.as_deref()),
        (Some(2), Some("media.rtp_port_min")),
        "{e}"
    );
    assert!(Config::from_toml("[mixer]\nmax_talkers = 0\n").is_err());
    assert!(Config::from_toml("[sip]\noutbound_proxy = \"gw:5060\"\n").is_err());
    assert!(Config::from_toml("[sip]\naccess_user = \"a b\"\n").is_err());
}

#[test]
fn sample_placeholders_are_refused() {
    for (text, key) in [
        (
            "[api]\nlisten = \"0.0.0.0:8080\"\ntoken = \"change-me-to-a-long-random-string\"\n",
            "api.token",
        ),
        (
            "[webrtc]\ntoken_secret = \"change-me-too\"\n",
            "webrtc.token_secret",
        ),
        ("[api]\ntoken = \"CHANGEME\"\n", "api.token"),
    ] {
        let e = Config::from_toml(text).unwrap_err();
        assert_eq!(e.key.as_deref(), Some(key), "{e}");
        assert!(e.message.contains("placeholder"), "{e}");
        assert!(e.line.is_some(), "{e}");
    }
    assert!(Config::from_toml("[webrtc]\ntoken_secret = \"9f2c41d7e0b5a3c8\"\n").is_ok());
}

#[test]
fn conference_labels_are_off_unless_asked_for() {
    assert!(!Config::default().metrics.conference_labels);
    let c = Config::from_toml("[metrics]\nconference_labels = true\n").unwrap();
    assert!(c.metrics.conference_labels);
}

#[test]
fn advertised_addresses_are_one_vocabulary_and_must_be_unicast() {
    let c = Config::from_toml(
        "[sip]\nadvertise = \"203.0.113.10\"\n[media]\nadvertise = \"2001:db8::10\"\n[webrtc]\nadvertise = \"203.0.113.11\"\n",
    )
    .unwrap();
    assert_eq!(c.sip.advertise, Some("203.0.113.10".parse().unwrap()));
    assert_eq!(c.media.advertise, Some("2001:db8::10".parse().unwrap()));
    assert_eq!(c.webrtc.advertise, Some("203.0.113.11".parse().unwrap()));
    // The older name of the WebRTC key is still read.
    let c = Config::from_toml("[webrtc]\npublic_ip = \"203.0.113.12\"\n").unwrap();
    assert_eq!(c.webrtc.advertise, Some("203.0.113.12".parse().unwrap()));
    for (section, bad) in [("sip", "0.0.0.0"), ("media", "::"), ("webrtc", "224.0.0.1")] {
        let e = Config::from_toml(&format!("[{section}]\nadvertise = \"{bad}\"\n")).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains(&format!("{section}.advertise")) && text.contains("cannot be advertised"),
            "{text}"
        );
    }
    assert!(Config::from_toml("[sip]\nadvertise = \"not an address\"\n").is_err());
}

#[test]
fn networks() {
    let n: Network = "127.0.0.0/8".parse().unwrap();
    assert!(n.contains("127.9.9.9".parse().unwrap()));
    assert!(!n.contains("128.0.0.1".parse().unwrap()));
    assert!(!n.contains("::1".parse().unwrap()));
    let all: Network = "0.0.0.0/0".parse().unwrap();
    assert!(all.contains("8.8.8.8".parse().unwrap()));
    assert!(
        "fe80::/10"
            .parse::<Network>()
            .unwrap()
            .contains("fe80::1".parse().unwrap())
    );
    assert!("x/8".parse::<Network>().is_err());
    assert!("::/129".parse::<Network>().is_err());
}

#[test]
fn api_https_wants_both_certificate_and_key() {
    for text in [
        "[api]\ntls_cert = \"/etc/confab/api.crt\"\n",
        "[api]\ntls_key = \"/etc/confab/api.key\"\n",
    ] {
        let e = Config::from_toml(text).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("api.tls_cert"), "{e}");
        assert!(e.message.contains("go together"), "{e}");
    }
    let c = Config::from_toml(
        "[api]\ntls_cert = \"/etc/confab/api.crt\"\ntls_key = \"/etc/confab/api.key\"\n",
    )
    .unwrap();
    assert_eq!(c.api.tls_cert, Some(PathBuf::from("/etc/confab/api.crt")));
    assert!(!c.api.hsts, "HSTS is only sent when asked for");
    assert!(Config::from_toml("[api]\nhsts = true\n").unwrap().api.hsts);
}

#[test]
fn digest_accounts_and_trunk_credentials() {
    let c = Config::from_toml(
        r#"
[sip]
realm = "bridge.example"

[[sip.users]]
username = "alice"
password = "correct horse"

[[sip.credentials]]
host = "trunk.example.net"
realm = "trunk"
username = "confab"
password = "battery staple"
"#,
    )
    .unwrap();
    assert_eq!(c.sip.realm, "bridge.example");
    assert_eq!(c.sip.users[0].username, "alice");
    assert_eq!(c.sip.credentials[0].realm.as_deref(), Some("trunk"));
    let shown = format!("{c:?}");
    assert!(
        !shown.contains("correct horse") && !shown.contains("battery staple"),
        "passwords stay out of debug output"
    );
    assert_eq!(Config::default().sip.realm, "confab");
    for (text, key, says) in [
        (
            "[[sip.users]]\nusername = \"a\"\npassword = \"change-me\"\n",
            "sip.users",
            "placeholder",
        ),
        (
            "[[sip.users]]\nusername = \"a\"\npassword = \"\"\n",
            "sip.users",
            "1-128",
        ),
        (
            "[[sip.users]]\nusername = \"a\\\"b\"\npassword = \"pw\"\n",
            "sip.users",
            "quotes",
        ),
        (
            "[[sip.users]]\nusername = \"a\"\npassword = \"pw\"\n[[sip.users]]\nusername = \"a\"\npassword = \"pw2\"\n",
            "sip.users",
            "twice",
        ),
        (
            "[[sip.credentials]]\nhost = \"\"\nusername = \"a\"\npassword = \"pw\"\n",
            "sip.credentials",
            "host",
        ),
        ("[sip]\nrealm = \"\"\n", "sip.realm", "1-128"),
    ] {
        let e = Config::from_toml(text).unwrap_err();
        assert_eq!(e.key.as_deref(), Some(key), "{text}: {e}");
        assert!(e.message.contains(says), "{text}: {e}");
    }
    let e = Config::from_toml("[[sip.users]]\nusername = \"a\"\n").unwrap_err();
    assert!(e.message.contains("password"), "{e}");
}

#[test]
fn keypad_sequences_are_checked_and_named_with_their_line() {
    let c = Config::from_toml("[keypad]\nmute = \"##6\"\nend = \"\"\n").unwrap();
    let map = c.keypad.key_map().unwrap();
    assert_eq!(map.keys(crate::call::keypad::KeyAction::Mute), Some("##6"));
    assert_eq!(map.keys(crate::call::keypad::KeyAction::End), None);
    assert_eq!(map.keys(crate::call::keypad::KeyAction::Lock), Some("*5"));
    let e = Config::from_toml("[keypad]\n\nmute = \"*6x\"\n").unwrap_err();
    assert_eq!(e.key.as_deref(), Some("keypad.mute"), "{e}");
    assert_eq!(e.line, Some(3), "{e}");
    // `*` alone would swallow every other sequence.
    let e = Config::from_toml("[keypad]\nhelp = \"*\"\n").unwrap_err();
    assert!(e.to_string().contains("start of the other"), "{e}");
}

#[test]
fn languages_menu_and_access_users_are_checked() {
    let c = Config::from_toml(
        "[sip]\nlanguage = \"de\"\nmenu_languages = [\"en\", \"fr\", \"de\"]\n\
         [[sip.access_users]]\nuser = \"conferencia\"\nlanguage = \"es\"\n",
    )
    .unwrap();
    assert_eq!(c.sip.prompt_languages(), ["de", "en", "fr", "es"]);
    assert_eq!(c.sip.access_users[0].user, "conferencia");
    for (text, key, says) in [
        (
            "[sip]\nlanguage = \"xx\"\n",
            "sip.language",
            "no built-in prompts",
        ),
        (
            "[sip]\nmenu_languages = [\"en\", \"fr\", \"en\"]\n",
            "sip.menu_languages",
            "offered twice",
        ),
        (
            "[sip]\nmenu_languages = [\"en\", \"fr fr\"]\n",
            "sip.menu_languages",
            "not a language tag",
        ),
        (
            "[sip]\nmenu_languages = [\"en\",\"de\",\"fr\",\"es\",\"en\",\"de\",\"fr\",\"es\",\"en\",\"de\"]\n",
            "sip.menu_languages",
            "at most 9",
        ),
        (
            "[[sip.access_users]]\nuser = \"conference\"\nlanguage = \"fr\"\n",
            "sip.access_users",
            "already an access user",
        ),
        (
            "[[sip.access_users]]\nuser = \"a\\r\\nb\"\nlanguage = \"fr\"\n",
            "sip.access_users",
            "not a valid SIP user",
        ),
        (
            "[[sip.access_users]]\nuser = \"konferenz\"\nlanguage = \"tlh\"\n",
            "sip.access_users",
            "no built-in prompts",
        ),
    ] {
        let e = Config::from_toml(text).unwrap_err();
        assert_eq!(e.key.as_deref(), Some(key), "{text}: {e}");
        assert!(e.to_string().contains(says), "{text}: {e}");
    }
    // A folder of prompts may hold any language; it is read at start.
    let c = Config::from_toml("[sip]\nprompts_dir = \"/p\"\nmenu_languages = [\"en\", \"tlh\"]\n")
        .unwrap();
    assert_eq!(c.sip.prompt_languages(), ["en", "tlh"]);
}

#[test]
fn a_postgresql_url_and_a_node_name_are_checked() {
    let c = Config::from_toml(
        "[storage]\nurl = \"postgres://confab:pw@db:5432/confab\"\nnode = \"node-1.eu\"\n",
    )
    .unwrap();
    assert_eq!(c.storage.node_name(), "node-1.eu");
    for (toml, key) in [
        ("[storage]\nurl = \"mysql://db/confab\"\n", "storage.url"),
        ("[storage]\nnode = \"a b\"\n", "storage.node"),
        ("[storage]\nnode = \"\"\n", "storage.node"),
        // Kamailio's set is in the shared database, and Kamailio's column is an INTEGER.
        ("[storage]\ndispatcher_set = 1\n", "storage.dispatcher_set"),
        (
            "[storage]\nurl = \"postgres://db/c\"\nnode = \"n1\"\ndispatcher_set = 2147483648\n",
            "storage.dispatcher_set",
        ),
        // Several nodes: each named, each reachable.
        (
            "[storage]\nurl = \"postgres://db/confab\"\n",
            "storage.node",
        ),
        (
            "[storage]\nurl = \"postgres://db/c\"\nnode = \"n1\"\n[sip]\nlisten = \"0.0.0.0:5060\"\n",
            "sip.advertise",
        ),
        (
            "[storage]\nurl = \"postgres://db/c\"\nnode = \"n1\"\n[api]\nlisten = \"0.0.0.0:8080\"\ntoken = \"t\"\n",
            "api.public_url",
        ),
    ] {
        let e = Config::from_toml(toml).unwrap_err();
        assert_eq!(e.key.as_deref(), Some(key), "{toml}: {e}");
    }
    // Unset: the host name, which is a valid node name.
    assert!(sections::valid_node_name(
        &Config::default().storage.node_name()
    ));
}
