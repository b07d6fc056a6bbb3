import pytest
from hypothesis import given
from hypothesis import strategies as st

from farm.errors import InventoryError
from farm.fleet import inventory
from farm.model import Node

GOOD_YAML = """
nodes:
  - {name: a1, address: 127.0.0.1, port: 1623, username: admin, password: pw1}
  - {name: b.2_x-y, address: bmc-2.example.com, username: root, password: pw2}
  - {name: c, address: "::1", port: "624", username: u, password: p}
"""


def test_yaml_parses_with_default_port():
    nodes = inventory.parse(GOOD_YAML, "inv.yaml")
    assert [n.name for n in nodes] == ["a1", "b.2_x-y", "c"]
    assert [n.port for n in nodes] == [1623, 623, 624]
    assert nodes[1].address == "bmc-2.example.com"


def test_csv_parses_with_optional_port():
    text = "name,address,port,username,password\nn1,127.0.0.1,,admin,pw\nn2,127.0.0.2,700,admin,pw\n"
    nodes = inventory.parse(text, "inv.csv")
    assert nodes == [Node("n1", "127.0.0.1", 623, "admin", "pw"),
                     Node("n2", "127.0.0.2", 700, "admin", "pw")]


def test_csv_without_port_column():
    nodes = inventory.parse("name,address,username,password\nn1,::1,a,b\n", "x.csv")
    assert nodes[0].port == 623


@pytest.mark.parametrize("row,field", [
    ("bad name!,127.0.0.1,623,a,p", "name"),
    (",127.0.0.1,623,a,p", "name"),
    ("n,300.1.1.1,623,a,p", "address"),
    ("n,-bad-.host,623,a,p", "address"),
    ("n,127.0.0.1,0,a,p", "port"),
    ("n,127.0.0.1,65536,a,p", "port"),
    ("n,127.0.0.1,x,a,p", "port"),
    ("n,127.0.0.1,623,,p", "username"),
    ("n,127.0.0.1,623,a,", "password"),
])
def test_csv_errors_name_line_and_field(row, field):
    text = "name,address,port,username,password\nok,127.0.0.1,623,a,p\n" + row + "\n"
    with pytest.raises(InventoryError) as info:
        inventory.parse(text, "inv.csv")
    assert any(p.startswith("line 3:") and f"'{field}'" in p for p in info.value.problems), \
        info.value.problems


def test_yaml_errors_name_index_and_field():
    text = "nodes:\n  - {name: ok, address: 127.0.0.1, username: a, password: p}\n" \
           "  - {name: ok2, address: 127.0.0.1, port: 99999, username: a, password: p}\n"
    with pytest.raises(InventoryError) as info:
        inventory.parse(text, "inv.yaml")
    assert info.value.problems == ["nodes[1]: field 'port' must be an integer 1..65535, got 99999"]


def test_duplicate_names_are_rejected():
    text = "name,address,username,password\nn,::1,a,b\nn,::1,a,b\n"
    with pytest.raises(InventoryError) as info:
        inventory.parse(text, "x.csv")
    assert "line 3: field 'name' duplicates line 2" in info.value.problems[0]


def test_password_value_never_in_errors():
    text = "nodes:\n  - {name: 'bad name', address: 127.0.0.1, username: a, password: Hunter2Secret}\n" \
           "  - {name: ok, address: 127.0.0.1, username: a, password: [Hunter3Secret]}\n"
    with pytest.raises(InventoryError) as info:
        inventory.parse(text, "x.yaml")
    assert "Secret" not in str(info.value)


@pytest.mark.parametrize("text", ["nodes: 5", "- a\n- b", ": : :", "nodes:\n  - 7\n"])
def test_malformed_yaml_documents(text):
    with pytest.raises(InventoryError):
        inventory.parse(text, "x.yaml")


def test_csv_missing_columns():
    with pytest.raises(InventoryError) as info:
        inventory.parse("name,address\nn,::1\n", "x.csv")
    assert "username" in str(info.value) and "password" in str(info.value)


def test_name_length_limit():
    ok = "a" * 128
    assert inventory.parse(f"name,address,username,password\n{ok},::1,a,b\n", "x.csv")[0].name == ok
    with pytest.raises(InventoryError):
        inventory.parse(f"name,address,username,password\n{ok}a,::1,a,b\n", "x.csv")


names = st.from_regex(r"[A-Za-z0-9._][A-Za-z0-9._-]{0,19}", fullmatch=True)
nodes_strategy = st.lists(
    st.builds(Node, name=names, address=st.sampled_from(["127.0.0.1", "::1", "bmc.example"]),
              port=st.integers(1, 65535), username=st.text("abc", min_size=1, max_size=5),
              password=st.text("xyz!#", min_size=1, max_size=8),
              cipher_suites=st.sampled_from([(), (3,), (17, 3), (3, 17)]),
              privilege=st.sampled_from(["", "user", "operator", "administrator"]),
              kg=st.sampled_from(["", "00", "0102030405060708090a0b0c0d0e0f1011121314"]),
              workarounds=st.sampled_from([(), ("intel20",), ("opensesspriv", "sun20")]),
              labels=st.sampled_from([(), (("rack", "r12"),), (("pdu", "r12-a"), ("rack", "r12"))]),
              site=st.sampled_from(["default", "dc2", "hall-3.pod:a"])),
    unique_by=(lambda n: n.name.casefold(), lambda n: (n.address, n.port)), max_size=20)


@given(nodes_strategy)
def test_yaml_round_trip(nodes):
    assert inventory.parse(inventory.dump_yaml(nodes), "x.yaml") == nodes


@given(st.text(max_size=200))
def test_arbitrary_text_never_crashes(text):
    for filename in ("x.yaml", "x.csv"):
        try:
            inventory.parse(text, filename)
        except InventoryError:
            pass


BOMB = """a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
nodes: [{name: *i, address: *i, port: *i, username: *i, password: *i}]
"""


@pytest.mark.timeout(10)
@pytest.mark.parametrize("text,words", [
    (BOMB, "got a list"),                                    # 9**9 strings if expanded
    ("[" * 200_000 + "]" * 200_000, "not valid YAML"),       # nesting
    ("nodes: [!!python/object/apply:os.system [echo hi]]", "not valid YAML"),
    ("nodes:\n  - !!python/name:os.system {}\n", "not valid YAML"),
])
def test_hostile_yaml_is_refused_quickly(text, words):
    with pytest.raises(InventoryError) as err:
        inventory.parse(text, "evil.yaml")
    assert words in str(err.value) and len(str(err.value)) < 2000


def test_oversized_files_are_refused_unparsed(monkeypatch):
    monkeypatch.setattr(inventory, "MAX_BYTES", 1000)
    with pytest.raises(InventoryError, match="larger than"):
        inventory.parse("nodes: []\n" + "#" * 1000, "big.yaml")


def test_excel_csv_with_a_byte_order_mark():
    text = "\ufeffname,address,port,username,password\r\nn1,127.0.0.1,623,admin,pw\r\n"
    assert inventory.parse(text, "excel.csv")[0].name == "n1"


@pytest.mark.parametrize("rows,words", [
    (["n1,127.0.0.1,623,a,p", "N1,127.0.0.2,623,a,p"], "regardless of case"),
    (["n1,127.0.0.1,623,a,p", "n2,127.0.0.1,623,a,p"], "BMC 127.0.0.1:623 is already line 2"),
    (["n1,127.0.0.1,623,a," + "x" * 21], "IPMI 2.0 allows at most 20"),
    (["n1,127.0.0.1,623," + "u" * 17 + ",p"], "IPMI 2.0 allows at most 16"),
])
def test_entries_an_operator_would_not_mean(rows, words):
    text = "name,address,port,username,password\n" + "\n".join(rows) + "\n"
    with pytest.raises(InventoryError) as err:
        inventory.parse(text, "x.csv")
    assert words in str(err.value) and "x" * 21 not in str(err.value)


def test_redfish_entries():
    nodes = inventory.parse(
        "nodes:\n"
        "- {name: r1, driver: redfish, address: 'https://10.0.0.5', username: root, password: pw}\n"
        "- {name: r2, driver: redfish, address: 'http://bmc.example:8000/', username: root,\n"
        "   password: pw, system_id: System.Embedded.1, verify_tls: false}\n"
        "- {name: i1, address: 10.0.0.6, username: admin, password: pw}\n", "inv.yaml")
    r1, r2, i1 = nodes
    assert (r1.driver, r1.address, r1.verify_tls, r1.port) == ("redfish", "https://10.0.0.5", "", 0)
    assert (r2.address, r2.system_id, r2.verify_tls) == ("http://bmc.example:8000", "System.Embedded.1",
                                                          "false")
    assert i1.driver == "ipmi" and i1.port == 623
    assert inventory.parse(inventory.dump_yaml(nodes), "again.yaml") == nodes


@pytest.mark.parametrize("entry, words", [
    ("{name: r, driver: redfish, address: '10.0.0.5', username: u, password: p}", "https://host"),
    ("{name: r, driver: redfish, address: 'ftp://h', username: u, password: p}", "https://host"),
    ("{name: r, driver: redfish, address: 'https://u:pw@h', username: u, password: p}", "https://host"),
    ("{name: r, driver: redfish, address: 'https://h/redfish', username: u, password: p}", "https://host"),
    ("{name: r, driver: redfish, address: 'https://h', port: 443, username: u, password: p}",
     "in the address URL"),
    ("{name: r, driver: redfish, address: 'https://h', username: u, password: p, verify_tls: maybe}",
     "verify_tls"),
    ("{name: r, driver: snmp, address: h, username: u, password: p}", "ipmi or redfish"),
    ("{name: r, address: h, username: u, password: p, system_id: x}", "redfish nodes only"),
])
def test_bad_redfish_entries(entry, words):
    with pytest.raises(InventoryError) as info:
        inventory.parse(f"nodes:\n- {entry}\n", "inv.yaml")
    assert words in str(info.value)


def test_ipmi_settings_per_node_yaml_and_csv():
    yaml_text = ("nodes:\n- {name: a, address: 10.0.0.1, username: u, password: p, "
                 "cipher_suites: [3, 17], privilege: admin, kg: '0xAbCd', "
                 "workarounds: [opensesspriv, opensesspriv]}\n")
    (a,) = inventory.parse(yaml_text, "x.yaml")
    assert (a.cipher_suites, a.privilege, a.kg, a.workarounds) == (
        (3, 17), "administrator", "abcd", ("opensesspriv",))
    csv_text = ("name,address,username,password,cipher_suites,privilege,kg,workarounds\n"
                "b,10.0.0.2,u,p,17;3,user,,intel20;nochecksumcheck\n")
    (b,) = inventory.parse(csv_text, "x.csv")
    assert (b.cipher_suites, b.privilege, b.kg, b.workarounds) == (
        (17, 3), "user", "", ("intel20", "nochecksumcheck"))
    assert "kg" not in b.public() and a.public()["kg"] == "(set)"


@pytest.mark.parametrize("field, value, words", [
    ("cipher_suites", "[2]", "'cipher_suites' must list distinct suites"),
    ("cipher_suites", "[3, 3]", "'cipher_suites' must list distinct suites"),
    ("privilege", "root", "'privilege' must be one of"),
    ("kg", "'not-hex-secret'", "'kg' must be the BMC key in hex"),
    ("kg", "'" + "ab" * 21 + "'", "at most 20 bytes"),
    ("workarounds", "[fixeverything]", "'workarounds' must list names of"),
])
def test_bad_ipmi_settings_name_the_entry_and_field(field, value, words):
    text = (f"nodes:\n- {{name: a, address: 10.0.0.1, username: u, password: p, "
            f"{field}: {value}}}\n")
    with pytest.raises(InventoryError) as err:
        inventory.parse(text, "x.yaml")
    assert str(err.value).startswith("nodes[0]: ") and words in str(err.value)
    assert "not-hex-secret" not in str(err.value) and "ab" * 21 not in str(err.value)


def test_ipmi_settings_refused_on_redfish_nodes():
    text = ("nodes:\n- {name: r, driver: redfish, address: 'https://10.0.0.9', username: u, "
            "password: p, privilege: user}\n")
    with pytest.raises(InventoryError, match="'privilege' is for ipmi nodes only"):
        inventory.parse(text, "x.yaml")


def test_labels_yaml_and_csv_and_their_errors():
    (a,) = inventory.parse("nodes:\n- {name: a, address: 10.0.0.1, username: u, password: p, "
                           "labels: {rack: r12, pdu: r12-a, unit: 7}}\n", "x.yaml")
    assert a.labels == (("pdu", "r12-a"), ("rack", "r12"), ("unit", "7"))
    assert a.public()["labels"] == {"pdu": "r12-a", "rack": "r12", "unit": "7"}
    (b,) = inventory.parse("name,address,username,password,labels\n"
                           "b,10.0.0.2,u,p,rack=r12;role=compute\n", "x.csv")
    assert b.labels == (("rack", "r12"), ("role", "compute"))
    for bad, words in (("{rack: 'r 12'}", "rack's value"), ("{1rack: r1}", "key"),
                       ("'rack'", "key=value"), ("[rack]", "a mapping")):
        with pytest.raises(InventoryError, match=words):
            inventory.parse("nodes:\n- {name: a, address: 10.0.0.1, username: u, password: p, "
                            f"labels: {bad}}}\n", "x.yaml")


def test_a_nodes_site_yaml_and_csv_default_and_errors():
    a, b = inventory.parse("nodes:\n- {name: a, address: 10.0.0.1, username: u, password: p, "
                           "site: dc2}\n- {name: b, address: https://10.0.0.2, driver: redfish, "
                           "username: u, password: p, site: 7}\n", "x.yaml")
    assert (a.site, b.site) == ("dc2", "7")
    assert a.public()["site"] == "dc2" and a.extra()["site"] == "dc2"
    c, d = inventory.parse("name,address,username,password,site\n"
                           "c,10.0.0.3,u,p,dc1\nd,10.0.0.4,u,p,\n", "x.csv")
    assert (c.site, d.site) == ("dc1", "default")
    assert "site" not in d.extra() and d.public()["site"] == "default"
    for bad, words in (("'dc 2'", "field 'site' must be"), ("[dc2]", "field 'site' must be"),
                       ("'dc2,dc3'", "field 'site' must be")):
        with pytest.raises(InventoryError, match=words):
            inventory.parse("nodes:\n- {name: a, address: 10.0.0.1, username: u, password: p, "
                            f"site: {bad}}}\n", "x.yaml")
    # each problem once, for a redfish node too
    with pytest.raises(InventoryError) as caught:
        inventory.parse("nodes:\n- {name: a, driver: redfish, address: 'https://10.0.0.1', "
                        "username: u, password: p, labels: {rack: 'r 1'}, site: 'd c'}\n", "x.yaml")
    assert len(caught.value.problems) == 2, caught.value.problems
    with pytest.raises(InventoryError, match="'site' is a field of its own"):
        inventory.parse("nodes:\n- {name: a, address: 10.0.0.1, username: u, password: p, "
                        "labels: {site: dc2}}\n", "x.yaml")


def test_names_may_not_begin_with_a_dash():
    with pytest.raises(InventoryError, match="not beginning with '-'"):
        inventory.parse("name,address,username,password\n-n1,10.0.0.1,u,p\n", "x.csv")


def bomb_in(field):
    """A 592-byte-class alias bomb (9 levels: 9**9 strings if expanded) in
    one field of an otherwise good entry."""
    head = BOMB.rsplit("nodes:", 1)[0]
    return head + ("nodes: [{name: n1, address: 127.0.0.1, username: u, password: p, "
                   f"{field}: *i}}]\n")


@pytest.mark.parametrize("text,words", [
    (bomb_in("workarounds"), "'workarounds' must list"),   # str() of the list built it: 79 s, 3.6 GB
    (bomb_in("cipher_suites"), "'cipher_suites' must list"),
    (bomb_in("labels"), "'labels' must be a mapping"),
    (bomb_in("privilege"), "'privilege' must be one of"),
    ("nodes: [{name: n1, address: 127.0.0.1, username: u, password: p, privilege: [admin]}]",
     "nodes[0]: field 'privilege' must be one of"),          # was a TypeError traceback
    ("nodes: [{name: n1, address: 127.0.0.1, username: u, password: p, privilege: {a: b}}]",
     "nodes[0]: field 'privilege' must be one of"),
])
def test_hostile_fields_are_refused_in_bounded_memory(text, words):
    """Each refused by a fresh interpreter, its peak memory (VmHWM) grown by
    less than 50 MB over what importing farm took, within a deadline."""
    import subprocess
    import sys
    code = ("import sys\nfrom farm.fleet import inventory\nfrom farm.errors import InventoryError\n"
            "def peak():\n    return int([l.split()[1] for l in open('/proc/self/status') "
            "if l.startswith('VmHWM')][0])\n"
            "before = peak()\ntext = sys.stdin.read()\n"
            "try:\n    inventory.parse(text, 'evil.yaml')\n    print('ACCEPTED')\n"
            "except InventoryError as e:\n    print(e)\n"
            "print(peak() - before)\n")
    out = subprocess.run([sys.executable, "-c", code], input=text, capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr[-1000:]
    message, grown = out.stdout.rsplit("\n", 2)[0], int(out.stdout.split()[-1])
    assert words in message, message
    assert grown < 50_000, grown  # KiB


@pytest.mark.parametrize("entry,words", [
    ({"name": "good1\n"}, "field 'name'"),                  # `$` matched before the newline
    ({"labels": {"rack": "r1\n"}}, "rack's value"),
    ({"username": "ad\0min"}, "'username' contains a NUL"),
    ({"password": "pw\0"}, "'password' contains a NUL"),
    ({"password": "pw\nx"}, "'password' contains a NUL or a line break"),
])
def test_trailing_newlines_and_nuls_are_refused(entry, words):
    raw = dict({"name": "good1", "address": "127.0.0.1", "username": "admin", "password": "pw"},
               **entry)
    import yaml
    for text, filename in ((yaml.safe_dump({"nodes": [raw]}), "inv.yaml"),):
        with pytest.raises(InventoryError) as err:
            inventory.parse(text, filename)
        assert words in str(err.value)
        assert "pw\0" not in str(err.value) and "pw\nx" not in str(err.value)


def test_a_nul_in_a_csv_secret_is_refused():
    text = "name,address,username,password\nn1,127.0.0.1,adm\0in,pw\nn2,127.0.0.1,u,p\0w\n"
    with pytest.raises(InventoryError) as err:
        inventory.parse(text, "inv.csv")
    assert "line 2: field 'username' contains a NUL" in str(err.value)
    assert "line 3: field 'password' contains a NUL" in str(err.value)
