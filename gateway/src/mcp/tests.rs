use super::*;

#[test]
fn messages_are_read_with_their_tool_uri_and_arguments() {
    let m =
        read(br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"add","arguments":{"a":1,"b":2}}}"#)
            .unwrap();
    assert_eq!(
        (m.kind.as_ref(), m.method.as_deref(), m.id.as_deref()),
        ("request", Some("tools/call"), Some("7"))
    );
    assert_eq!(m.tool.as_deref(), Some("add"));
    assert_eq!(m.arguments_bytes, Some(r#"{"a":1,"b":2}"#.len() as u64));
    assert_eq!(
        m.arguments_sha256.as_deref(),
        Some(hex(&Sha256::digest(br#"{"a":1,"b":2}"#)).as_str())
    );
    let r =
        read(br#"{"jsonrpc":"2.0","id":"r-1","method":"resources/read","params":{"uri":"notes://today"}}"#).unwrap();
    assert_eq!(
        (r.uri.as_deref(), r.id.as_deref()),
        (Some("notes://today"), Some("\"r-1\""))
    );
    let p =
        read(br#"{"jsonrpc":"2.0","id":2,"method":"prompts/get","params":{"name":"greet","arguments":{"name":"x"}}}"#)
            .unwrap();
    assert_eq!(p.prompt.as_deref(), Some("greet"));
    let n = read(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
    assert_eq!((n.kind.as_ref(), n.id), ("notification", None));
    let answer = read(br#"{"jsonrpc":"2.0","id":0,"result":{}}"#).unwrap();
    assert_eq!(answer.kind, "response");
}

#[test]
fn garbage_batches_and_bad_messages_are_refused_with_json_rpc_codes() {
    assert_eq!(read(b"{not json").unwrap_err().code, code::PARSE_ERROR);
    assert_eq!(read(b"[]").unwrap_err().code, code::INVALID_REQUEST);
    let batch = read(br#" [{"jsonrpc":"2.0","id":1,"method":"ping"}]"#).unwrap_err();
    assert!(batch.message.contains("batches"), "{batch}");
    assert_eq!(
        read(b"[1,").unwrap_err().code,
        code::PARSE_ERROR,
        "a broken array is not JSON"
    );
    assert_eq!(read(br#"{"jsonrpc":"2.0"} x"#).unwrap_err().code, code::PARSE_ERROR);
    assert_eq!(read(b"5").unwrap_err().code, code::INVALID_REQUEST);
    let no_params = read(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#).unwrap_err();
    assert!(no_params.message.contains("`name`"), "{no_params}");
    assert_eq!(
        read(br#"{"id":1,"method":"x"}"#).unwrap_err().code,
        code::INVALID_REQUEST
    );
    assert_eq!(
        read(br#"{"jsonrpc":"2.0","id":1,"method":3}"#).unwrap_err().code,
        code::INVALID_REQUEST
    );
    // A repeated member the policy reads: which one wins depends on the parser.
    let twice =
        read(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","name":"delete_everything"}}"#);
    assert_eq!(twice.unwrap_err().code, code::INVALID_REQUEST);
    let method_twice = read(br#"{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/call","params":{"name":"x"}}"#);
    assert!(method_twice.unwrap_err().message.contains("duplicate field"));
    assert_eq!(
        read(br#"{"jsonrpc":"2.0","id":1,"method":"x","params":[1]}"#)
            .unwrap_err()
            .code,
        code::INVALID_REQUEST
    );
    let no_name = read(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#).unwrap_err();
    assert!(no_name.message.contains("name"));
    let body: Value = serde_json::from_slice(&error_body(Some("\"a\""), code::DENIED, "no")).unwrap();
    assert_eq!(
        body,
        json!({"jsonrpc":"2.0","id":"a","error":{"code":-32001,"message":"no"}})
    );
    let body: Value = serde_json::from_slice(&error_body(None, code::PARSE_ERROR, "bad")).unwrap();
    assert!(body["id"].is_null());
}

fn only_add() -> Allows {
    Arc::new(|t: &str| t == "add")
}

const LIST: &str = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"add"},{"name":"delete_everything"}]}}"#;

#[test]
fn a_json_tools_list_is_filtered_and_other_answers_pass_unheld() {
    let mut o = Observer::new("application/json", Some("1".into()), Some(only_add()));
    assert!(o.rewrites());
    let (a, b) = LIST.as_bytes().split_at(20);
    assert_eq!(o.feed(a), Some(Bytes::new()), "held to be rewritten");
    assert_eq!(o.feed(b), Some(Bytes::new()));
    let out: Value = serde_json::from_slice(&o.finish()).unwrap();
    assert_eq!(out["result"]["tools"], json!([{"name": "add"}]));
    assert_eq!((o.outcome.status, o.outcome.tools_filtered), ("ok", 1));

    let mut o = Observer::new("application/json", Some("3".into()), None);
    let err = br#"{"jsonrpc":"2.0","id":3,"error":{"code":-32602,"message":"Unknown tool"}}"#;
    assert_eq!(o.feed(err), None, "forwarded as it comes");
    assert!(o.finish().is_empty());
    assert_eq!(o.outcome.status, "error");
    assert_eq!(o.outcome.error_code, Some(-32602));
    let mut o = Observer::new("application/json", Some("4".into()), None);
    o.feed(br#"{"jsonrpc":"2.0","id":4,"result":{"content":[],"isError":true}}"#);
    o.finish();
    assert_eq!(o.outcome.status, "tool_error");
}

#[test]
fn streams_pass_event_by_event_with_the_answer_read_and_filtered() {
    let mut o = Observer::new("text/event-stream", Some("1".into()), Some(only_add()));
    let progress = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1}}\n\n";
    let answer = format!("event: message\nid: ev-9\ndata: {LIST}\n\n");
    let half = progress.len() / 2;
    assert_eq!(
        o.feed(&progress.as_bytes()[..half]).unwrap(),
        Bytes::new(),
        "an event is held until whole"
    );
    assert_eq!(
        o.feed(&progress.as_bytes()[half..]).unwrap(),
        progress.as_bytes(),
        "then passed untouched"
    );
    let out = o.feed(answer.as_bytes()).unwrap();
    let text = String::from_utf8(out.to_vec()).unwrap();
    assert!(text.starts_with("event: message\nid: ev-9\ndata: "), "{text}");
    assert!(!text.contains("delete_everything"));
    assert_eq!(
        (o.outcome.status, o.outcome.messages, o.outcome.tools_filtered),
        ("ok", 2, 1)
    );
}

#[test]
fn oversize_answers_pass_unread() {
    let mut o = Observer::new("text/event-stream", Some("1".into()), None);
    let big = vec![b'x'; MAX_EVENT + 10];
    let out = o.feed(&big).unwrap();
    assert_eq!(out.len(), big.len(), "everything held goes out");
    assert_eq!(o.feed(b"data: more\n\n"), None, "then bytes pass through");
    // One that must be filtered is never let through unfiltered: an error takes its place.
    let mut o = Observer::new("application/json", Some("1".into()), Some(only_add()));
    let chunk = vec![b' '; MAX_ANSWER / 2 + 1];
    assert_eq!(o.feed(&chunk), Some(Bytes::new()));
    let out: Value = serde_json::from_slice(&o.feed(&chunk).unwrap()).unwrap();
    assert_eq!(
        (out["id"].clone(), out["error"]["code"].clone()),
        (json!(1), json!(code::GATEWAY))
    );
    assert_eq!(o.feed(b"more"), Some(Bytes::new()), "the rest is dropped");
    assert!(o.finish().is_empty());
    let mut o = Observer::new("text/event-stream", None, Some(only_add()));
    let out = o.feed(&big).unwrap();
    assert!(String::from_utf8_lossy(&out).starts_with("event: message\ndata: {"));
    assert_eq!(o.feed(LIST.as_bytes()), Some(Bytes::new()));
    assert_eq!(o.outcome.status, "error");
}

#[test]
fn the_servers_own_stream_has_its_tool_lists_filtered_too() {
    // The HTTP+SSE transport answers a POSTed tools/list on the GET stream.
    let mut o = Observer::new("text/event-stream", None, Some(only_add()));
    let endpoint = "event: endpoint\ndata: /messages?sessionId=s1\n\n";
    assert_eq!(
        o.feed(endpoint.as_bytes()).unwrap(),
        endpoint.as_bytes(),
        "not JSON: untouched"
    );
    let out = o.feed(format!("event: message\ndata: {LIST}\n\n").as_bytes()).unwrap();
    assert!(!String::from_utf8_lossy(&out).contains("delete_everything"));
    assert_eq!((o.outcome.status, o.outcome.tools_filtered), ("none", 1));
}
