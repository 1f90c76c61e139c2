use super::*;

fn claim(name: &str, created: &str, ports: &[(Protocol, u16)], holds: bool) -> Claim {
    Claim {
        namespace: "default".into(),
        name: name.into(),
        created: created.into(),
        ports: ports
            .iter()
            .map(|&(protocol, number)| Port { protocol, number })
            .collect(),
        holds,
    }
}

const T1: &str = "2026-12-01T10:00:00Z";
const T2: &str = "2026-12-01T10:00:05Z";

#[test]
fn the_older_service_keeps_a_contested_port_and_the_other_waits() {
    let claims = [
        claim("new", T2, &[(Protocol::Tcp, 80)], false),
        claim(
            "old",
            T1,
            &[(Protocol::Tcp, 80), (Protocol::Tcp, 443)],
            false,
        ),
    ];
    let d = decide(&claims, &BTreeSet::new());
    assert_eq!(d[1], Decision::Assign);
    let Decision::Pending(why) = &d[0] else {
        panic!("{d:?}")
    };
    assert!(why.contains("80/TCP is Service default/old's"), "{why}");
}

#[test]
fn one_port_number_serves_one_service_per_protocol() {
    let claims = [
        claim("tcp", T1, &[(Protocol::Tcp, 53)], false),
        claim("udp", T2, &[(Protocol::Udp, 53)], false),
    ];
    assert_eq!(
        decide(&claims, &BTreeSet::new()),
        [Decision::Assign, Decision::Assign]
    );
}

#[test]
fn a_port_a_host_program_listens_on_is_refused_even_to_a_service_that_held_it() {
    let listening = BTreeSet::from([Port {
        protocol: Protocol::Tcp,
        number: 8080,
    }]);
    for holds in [false, true] {
        let d = decide(
            &[claim("web", T1, &[(Protocol::Tcp, 8080)], holds)],
            &listening,
        );
        let Decision::Pending(why) = &d[0] else {
            panic!("holds {holds}: {d:?}")
        };
        assert!(
            why.contains("a program on the host listens on 8080/TCP"),
            "{why}"
        );
    }
}

#[test]
fn ssh_kinits_own_ports_and_the_node_port_range_are_never_given() {
    for (number, what) in [
        (22, "SSH"),
        (6443, "the API server"),
        (2379, "etcd clients"),
        (10250, "the kubelet"),
        (179, "kube-router"),
        (30000, "NodePorts"),
        (32767, "NodePorts"),
    ] {
        for protocol in [Protocol::Tcp, Protocol::Udp] {
            // Even to a Service that held it (one from before this rule, say).
            let d = decide(
                &[claim("greedy", T1, &[(protocol, number)], true)],
                &BTreeSet::new(),
            );
            let Decision::Pending(why) = &d[0] else {
                panic!("{number}: {d:?}")
            };
            assert!(why.contains("is reserved for"), "{number}: {why}");
            assert!(why.contains(what), "{number}: {why}");
        }
    }
    for number in [80, 443, 8080, 29999, 32768] {
        assert_eq!(reserved(number), None, "{number}");
    }
}

#[test]
fn a_service_holding_the_address_wins_over_an_older_newcomer() {
    // An older Service changed to type LoadBalancer after a newer one got port 80.
    let claims = [
        claim("older", T1, &[(Protocol::Tcp, 80)], false),
        claim("holder", T2, &[(Protocol::Tcp, 80)], true),
    ];
    let d = decide(&claims, &BTreeSet::new());
    assert_eq!(d[1], Decision::Assign);
    assert!(matches!(d[0], Decision::Pending(_)));
}

#[test]
fn a_refused_service_takes_none_of_its_ports() {
    let claims = [
        claim("a", T1, &[(Protocol::Tcp, 80)], false),
        claim(
            "b",
            T2,
            &[(Protocol::Tcp, 80), (Protocol::Tcp, 8080)],
            false,
        ),
        claim("c", "2026-12-01T10:00:09Z", &[(Protocol::Tcp, 8080)], false),
    ];
    let d = decide(&claims, &BTreeSet::new());
    assert_eq!(d[0], Decision::Assign);
    assert!(matches!(d[1], Decision::Pending(_)));
    assert_eq!(d[2], Decision::Assign);
}

#[cfg(target_endian = "little")]
#[test]
fn listeners_on_the_node_address_or_every_address_count_loopback_ones_do_not() {
    let node: IpAddr = "192.0.2.2".parse().unwrap();
    let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
   1: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0
   2: 020200C0:192B 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3 1 0 100 0 0 10 0
   3: 020200C0:192B 030200C0:D431 01 00000000:00000000 00:00000000 00000000     0        0 4 1 0 100 0 0 10 0
   4: 030200C0:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5 1 0 100 0 0 10 0
";
    let ports: Vec<u16> = parse_table(tcp, Protocol::Tcp, false, node)
        .iter()
        .map(|p| p.number)
        .collect();
    // 22 on every address, 6443 on the node's; not 8080 on loopback, not a connection's
    // local port, not 80 on another address.
    assert_eq!(ports, [22, 6443]);

    let tcp6 =
        "  sl  local_address                         remote_address                        st
   0: 00000000000000000000000000000000:2382 00000000000000000000000000000000:0000 0A
   1: 0000000000000000FFFF0000020200C0:0035 00000000000000000000000000000000:0000 0A
   2: 00000000000000000000000001000000:0277 00000000000000000000000000000000:0000 0A
";
    let ports: Vec<u16> = parse_table(tcp6, Protocol::Tcp, true, node)
        .iter()
        .map(|p| p.number)
        .collect();
    assert_eq!(ports, [9090, 53]);

    let udp = "   sl  local_address rem_address   st
  0: 00000000:0044 00000000:0000 07
  1: 3500007F:0035 00000000:0000 07
";
    assert_eq!(
        parse_table(udp, Protocol::Udp, false, node),
        [Port {
            protocol: Protocol::Udp,
            number: 68
        }]
    );
}

#[test]
fn a_burst_of_changes_is_one_decision_a_second_and_quiet_means_every_ten() {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let mut pace = Pace::default();
    assert!(pace.due(at(0)), "the first list is decided at once");
    // A hundred changes within the next second: none decided before the gap is over...
    for ms in 1..100 {
        pace.changed();
        assert!(
            !pace.due(at(ms * 10)),
            "decided again {ms}0 ms after the last"
        );
    }
    // ...then once for all of them.
    assert!(pace.due(at(1000)));
    assert!(!pace.due(at(1500)), "nothing changed since");
    // Without a change, the resync.
    assert!(!pace.due(at(10_999)));
    assert!(pace.due(at(11_000)));
}
