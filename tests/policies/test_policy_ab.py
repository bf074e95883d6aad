"""A/B bucketing: deterministic, close to the configured split, with key fallbacks."""

from policies import assign_arm, bucket, validate_policies
from policies.ab import key_value


def _policy(name="p", **ab):
    return validate_policies({name: {"ab": ab}})[name]


def test_same_key_same_arm_every_time():
    p = _policy(control_percent=50)
    arms = {assign_arm(p, api_key="sk-123", user=None, headers={}) for _ in range(50)}
    assert len(arms) == 1


def test_bucket_is_the_documented_hash():
    import hashlib

    expected = int.from_bytes(hashlib.sha256(b"p:sk-1").digest()[:8], "big") % 10_000
    assert bucket("p", "sk-1") == expected
    assert 0 <= expected < 10_000


def test_split_is_close_to_control_percent():
    p = _policy(control_percent=30)
    n = 10_000
    control = sum(
        assign_arm(p, api_key=f"sk-{i}", user=None, headers={}) == "control" for i in range(n)
    )
    assert 0.28 * n <= control <= 0.32 * n


def test_zero_and_hundred_percent():
    keys = [f"k{i}" for i in range(200)]
    p0, p100 = _policy(control_percent=0), _policy(control_percent=100)
    assert {assign_arm(p0, api_key=k, user=None, headers={}) for k in keys} == {"compress"}
    assert {assign_arm(p100, api_key=k, user=None, headers={}) for k in keys} == {"control"}


def test_policy_name_changes_the_assignment():
    a, b = _policy("a", control_percent=50), _policy("b", control_percent=50)
    keys = [f"k{i}" for i in range(400)]
    arms_a = [assign_arm(a, api_key=k, user=None, headers={}) for k in keys]
    arms_b = [assign_arm(b, api_key=k, user=None, headers={}) for k in keys]
    assert arms_a != arms_b


def test_user_key_buckets_on_the_user_field():
    p = _policy(control_percent=50, key="user")
    # same user, different api keys -> same arm; find two users in different arms
    users = [f"u{i}" for i in range(100)]
    arms = {u: assign_arm(p, api_key="sk-shared", user=u, headers={}) for u in users}
    assert set(arms.values()) == {"compress", "control"}
    for u in users[:20]:
        assert assign_arm(p, api_key=f"sk-{u}-other", user=u, headers={}) == arms[u]


def test_header_key_is_case_insensitive():
    p = _policy(control_percent=50, key="header", header="X-Session")
    assert key_value(p, api_key="sk", user="u", headers={"X-SESSION": "s1"}) == "s1"
    assert key_value(p, api_key="sk", user="u", headers={"x-session": " s1 "}) == "s1"


def test_fallbacks_when_the_chosen_key_is_missing():
    pu = _policy(control_percent=50, key="user")
    assert key_value(pu, api_key="sk-a", user=None, headers={}) == "sk-a"
    assert key_value(pu, api_key="sk-a", user="", headers={}) == "sk-a"
    ph = _policy(control_percent=50, key="header")
    assert key_value(ph, api_key="sk-a", user="u", headers={"other": "x"}) == "sk-a"
    assert key_value(ph, api_key=None, user=None, headers={}) == "anonymous"
    pa = _policy(control_percent=50)
    assert key_value(pa, api_key=None, user="u", headers={}) == "anonymous"
    # a fallback assignment equals bucketing on the api key directly
    pk = _policy(control_percent=50, key="api_key")
    for i in range(50):
        assert assign_arm(pu, api_key=f"sk-{i}", user=None, headers={}) == assign_arm(
            pk, api_key=f"sk-{i}", user=None, headers={}
        )
