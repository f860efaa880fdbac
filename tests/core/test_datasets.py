"""Dataset declarations named the OpenLineage way (``sluicegate.datasets``): the naming table for
every scheme and every input kind, the declarations that cannot be named, and what the example
policy then decides about them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from openlineage.client import event_v2
from openlineage.client import run as legacy

from sluicegate.datasets import SCHEMES, name_in, name_uri, to_asset, to_assets
from sluicegate.exceptions import ActionError, DatasetError
from sluicegate.idempotency import action_digest
from sluicegate.model import parse_action
from sluicegate.policy import load_policy

POLICY = Path(__file__).resolve().parents[2] / "examples" / "policy.yaml"

# (declared URI, OpenLineage namespace, OpenLineage name), per the naming spec
NAMING = [
    # PostgreSQL: Airflow's asset URI (path segments) and the spec's URI (one dotted segment)
    ("postgres://prod:5432/crm/public/customers", "postgres://prod:5432", "crm.public.customers"),
    ("postgres://prod:5432/crm.public.customers", "postgres://prod:5432", "crm.public.customers"),
    ("postgresql://prod/crm/public/customers", "postgres://prod:5432", "crm.public.customers"),
    ("POSTGRES://Prod.Example.com:6543/crm/public/customers",
     "postgres://prod.example.com:6543", "crm.public.customers"),
    # credentials are never part of a name
    ("postgres://etl:s3cret@prod:5432/crm/public/customers",
     "postgres://prod:5432", "crm.public.customers"),
    ("postgres://[::1]/crm/public/customers", "postgres://[::1]:5432", "crm.public.customers"),
    ("mysql://db1/shop/orders", "mysql://db1:3306", "shop.orders"),
    ("mysql://db1:3307/shop.orders", "mysql://db1:3307", "shop.orders"),
    ("mssql://sql1/sales/dbo/orders", "mssql://sql1:1433", "sales.dbo.orders"),
    ("sqlserver://syn1:1433/dbo/orders", "sqlserver://syn1:1433", "dbo.orders"),
    ("sqlserver://syn1/sales.dbo.orders", "sqlserver://syn1:1433", "sales.dbo.orders"),
    ("redshift://examplecluster.us-west-2/dev/public/sales",
     "redshift://examplecluster.us-west-2:5439", "dev.public.sales"),
    ("snowflake://myorg-acct1/ANALYTICS/PUBLIC/CUSTOMERS",
     "snowflake://myorg-acct1", "ANALYTICS.PUBLIC.CUSTOMERS"),
    ("trino://trino1/hive/crm/customers", "trino://trino1:8080", "hive.crm.customers"),
    ("oracle://ora1/orcl/hr/employees", "oracle://ora1:1521", "orcl.hr.employees"),
    ("db2://db2host/sample/app/orders", "db2://db2host:50000", "sample.app.orders"),
    ("teradata://td1/sales/orders", "teradata://td1:1025", "sales.orders"),
    ("hive://metastore/default/events", "hive://metastore:10000", "default.events"),
    ("cassandra://c1/shop/carts", "cassandra://c1:9042", "shop.carts"),
    ("awsathena://athena.us-east-1.amazonaws.com/awsdatacatalog/crm/customers",
     "awsathena://athena.us-east-1.amazonaws.com", "awsdatacatalog.crm.customers"),
    # BigQuery: Airflow's URI, the spec's URI, and the dotted authority
    ("bigquery://my-project/crm/customers", "bigquery", "my-project.crm.customers"),
    ("bigquery:my-project.crm.customers", "bigquery", "my-project.crm.customers"),
    ("bigquery://my-project.crm.customers", "bigquery", "my-project.crm.customers"),
    # blob stores: the key without its surrounding slashes, %-escapes decoded
    ("s3://partner-share/exports/customers.csv", "s3://partner-share", "exports/customers.csv"),
    ("s3a://partner-share/exports/", "s3://partner-share", "exports"),
    ("s3n://partner-share/a%20b.csv", "s3://partner-share", "a b.csv"),
    ("gs://lake/raw/events.parquet", "gs://lake", "raw/events.parquet"),
    ("gcs://lake/raw/events.parquet", "gs://lake", "raw/events.parquet"),
    ("abfss://raw@lake1.dfs.core.windows.net/crm/customers.parquet",
     "abfss://raw@lake1.dfs.core.windows.net", "crm/customers.parquet"),
    ("wasbs://raw@lake1.blob.core.windows.net/crm/customers.csv",
     "wasbs://raw@lake1.blob.core.windows.net", "crm/customers.csv"),
    ("azurekusto://adx1.westeurope.kusto.windows.net/telemetry/events",
     "azurekusto://adx1.westeurope.kusto.windows.net", "telemetry/events"),
    # file systems: the absolute path
    ("hdfs://namenode/warehouse/crm/x/", "hdfs://namenode:8020", "/warehouse/crm/x"),
    ("hdfs://namenode:9000/warehouse/x", "hdfs://namenode:9000", "/warehouse/x"),
    ("dbfs://workspace1/mnt/raw/x.csv", "dbfs://workspace1", "/mnt/raw/x.csv"),
    ("file:///data/customers.csv", "file", "/data/customers.csv"),
    ("file://localhost/data/customers.csv", "file", "/data/customers.csv"),
    ("file://fileserver/share/customers.csv", "file://fileserver", "/share/customers.csv"),
    ("kafka://broker1/customer.events.v1", "kafka://broker1:9092", "customer.events.v1"),
    ("kafka://broker1:29092/orders", "kafka://broker1:29092", "orders"),
]  # fmt: skip


@pytest.mark.parametrize(("uri", "namespace", "name"), NAMING)
def test_each_scheme_is_named_as_the_openlineage_spec_names_it(
    uri: str, namespace: str, name: str
) -> None:
    assert name_uri(uri) == (namespace, name)
    # the same declaration in every form a pipeline may give it
    assert to_asset(uri) == {"namespace": namespace, "name": name}
    assert to_asset({"uri": uri}) == {"namespace": namespace, "name": name}


def test_every_scheme_is_in_the_naming_table() -> None:
    tested = {uri.split(":", 1)[0].lower() for uri, _, _ in NAMING}
    assert tested == set(SCHEMES)


@pytest.mark.parametrize(("uri", "namespace", "name"), NAMING)
def test_names_already_given_the_openlineage_way_are_kept(
    uri: str, namespace: str, name: str
) -> None:
    assert name_in(namespace, name) == (namespace, name)


class _WithUri:
    def __init__(self, uri: str) -> None:
        self.uri = uri


CUSTOMERS = {"namespace": "postgres://prod:5432", "name": "crm.public.customers"}


@pytest.mark.parametrize(
    "declared",
    [
        "postgres://prod:5432/crm/public/customers",
        {"uri": "postgres://prod:5432/crm/public/customers"},
        {"namespace": "postgres://prod:5432", "name": "crm.public.customers"},
        # a namespace of a known scheme is normalized, its name checked, as a URI's would be
        {"namespace": "postgresql://prod", "name": "crm/public/customers"},
        {"namespace": "postgres://prod:5432/", "name": "/crm.public.customers"},
        event_v2.Dataset(namespace="postgres://prod:5432", name="crm.public.customers"),
        event_v2.InputDataset(namespace="postgres://prod:5432", name="crm.public.customers"),
        event_v2.OutputDataset(namespace="postgresql://prod", name="crm.public.customers"),
        legacy.Dataset(namespace="postgres://prod:5432", name="crm.public.customers"),
        legacy.InputDataset(namespace="postgres://prod:5432", name="crm.public.customers"),
        _WithUri("postgres://prod:5432/crm/public/customers"),
    ],
    ids=lambda d: type(d).__name__ + (f"-{sorted(d)}" if isinstance(d, dict) else ""),
)
def test_every_kind_of_declaration_names_the_same_table(declared: Any) -> None:
    assert to_asset(declared) == CUSTOMERS


def test_classifications_given_with_a_declaration_are_kept() -> None:
    assert to_assets(
        [
            {**CUSTOMERS, "classifications": ["pii"]},
            {"uri": "s3://partner-share/x.csv", "classifications": ("pii", "export")},
            {"uri": "s3://partner-share/y.csv", "classifications": "pii"},
        ]
    ) == [
        {**CUSTOMERS, "classifications": ["pii"]},
        {"namespace": "s3://partner-share", "name": "x.csv", "classifications": ["pii", "export"]},
        {"namespace": "s3://partner-share", "name": "y.csv", "classifications": "pii"},
    ]


def test_a_namespace_no_rule_knows_is_explicit_and_kept_as_given() -> None:
    # e.g. Dagster's asset_namespace, a Marquez namespace written by hand
    assert to_asset({"namespace": "dagster", "name": "crm/customers"}) == {
        "namespace": "dagster",
        "name": "crm/customers",
    }
    assert name_in("warehouse://prod", "a/b") == ("warehouse://prod", "a/b")


def test_special_characters_of_a_name_survive_being_normalized() -> None:
    assert name_in("s3://b", "a#b?c%d.csv") == ("s3://b", "a#b?c%d.csv")
    assert name_in("file", "/tmp/a b.csv") == ("file", "/tmp/a b.csv")
    assert name_in("bigquery", "p.d.t") == ("bigquery", "p.d.t")


def test_a_lone_declaration_counts_as_a_list_of_one() -> None:
    assert to_assets("postgres://prod:5432/crm/public/customers") == [CUSTOMERS]
    assert to_assets(CUSTOMERS) == [CUSTOMERS]
    assert to_assets(None) == []


@pytest.mark.parametrize(
    ("declared", "reason"),
    [
        ("customers", "it has no scheme"),
        ("crm.public.customers", "it has no scheme"),
        ("", "it has no scheme"),
        # a scheme no rule knows: its producer's names are unknown, so it is not guessed
        ("warehouse://prod/crm/public/customers", "no OpenLineage naming rule is known for"),
        ("postgres://prod:5432/crm/customers", "it must name database.schema.table"),
        ("postgres://prod:5432/crm/public/customers/extra", "database.schema.table"),
        ("postgres://prod:5432/crm//customers", "database.schema.table"),
        ("postgres://prod:5432/crm/sch.ema/customers", "a path segment holds a dot"),
        ("postgres:///crm/public/customers", "it has no host"),
        ("postgres://prod:port/crm/public/customers", "its port is not valid"),
        ("mysql://db1/shop", "database.table"),
        ("bigquery://project/dataset", "project.dataset.table"),
        ("s3://partner-share", "the key is empty"),
        ("s3://partner-share/", "the key is empty"),
        ("abfss://lake1.dfs.core.windows.net/x", "container@account"),
        ("kafka://broker1/a/b", "one topic"),
        ("file:data.csv", "absolute path"),
        ("hdfs://namenode/", "names no path"),
        ({"namespace": "postgres://prod:5432", "name": ""}, "must not be empty"),
        ({"namespace": "postgres://prod:5432", "name": "customers"}, "database.schema.table"),
        ({"namespace": "file", "name": "data.csv"}, "absolute path"),
        ({"namespace": "postgres://prod:5432/crm", "name": "public.customers"}, "more than"),
        ({"name": "crm.public.customers"}, "needs a namespace and a name"),
        ({"uri": 5}, "its uri is not a string"),
        ({"uri": "s3://b/k", "name": "k"}, "not both"),
        ({**CUSTOMERS, "owner": "carol"}, "unknown keys ['owner']"),
        (42, "'int' is neither a URI"),
        (object(), "'object' is neither a URI"),
    ],
    # not object()'s repr, which holds its address: pytest-xdist's workers must collect alike
    ids=lambda v: "object()" if type(v) is object else repr(v),
)
def test_what_cannot_be_named_is_refused_with_the_value_and_the_fix(
    declared: Any, reason: str
) -> None:
    with pytest.raises(DatasetError) as err:
        to_assets(["s3://partner-share/ok.csv", declared], where="inlets")
    message = str(err.value)
    assert message.startswith("inlets[1]: cannot name ")
    assert reason in message
    assert "or as {'namespace': ..., 'name': ...}" in message  # how to declare it instead
    assert "\n" not in message
    assert isinstance(err.value, ActionError)  # a boundary maps it like any bad action


def test_a_password_in_a_uri_is_never_repeated_in_the_error() -> None:
    with pytest.raises(DatasetError) as err:
        to_asset("postgres://etl:s3cret@prod:5432/crm", where="inputs[0]")
    assert "s3cret" not in str(err.value)
    assert "postgres://etl:***@prod:5432/crm" in str(err.value)
    with pytest.raises(DatasetError) as err:
        to_asset({"uri": "mysql://etl:s3cret@db1/shop"})
    assert "s3cret" not in str(err.value)


def _decide(declared: list[Any]) -> tuple[str, str | None]:
    action = parse_action({"kind": "export", "inputs": to_assets(declared)})
    evaluation = load_policy(POLICY).evaluate(action)
    return evaluation.outcome, evaluation.rule


@pytest.mark.parametrize(
    "declared",
    [
        "postgres://prod:5432/crm/public/customers",  # Airflow's Asset URI of the table
        "postgresql://prod/crm/public/customers",
        "postgres://prod:5432/crm.public.customers",
        {"namespace": "postgresql://prod", "name": "crm/public/customers"},
        event_v2.InputDataset(namespace="postgres://prod:5432", name="crm.public.customers"),
    ],
    ids=repr,
)
def test_a_pii_table_declared_any_way_is_classified_and_needs_approval(declared: Any) -> None:
    # The example policy classifies crm.public.customers* as pii; a pii export needs two
    # stewards. Named otherwise (crm/public/customers), the export would be allowed.
    assert _decide([declared]) == ("require", "pii-export")


def test_the_digest_of_an_action_is_the_start_of_its_fingerprint() -> None:
    data = {"kind": "export", "inputs": [CUSTOMERS], "context": {"rows": 1}}
    action = parse_action(data)
    assert action_digest(data) == action_digest(action)
    assert action.fingerprint() == f"sha256:{action_digest(data)}" + action.fingerprint()[23:]
    assert len(action_digest(data)) == 16


@pytest.mark.parametrize(
    "change",
    [
        {"kind": "copy"},
        {"summary": "another summary"},
        {"inputs": [{"namespace": "postgres://prod:5432", "name": "crm.public.contacts"}]},
        {"outputs": [{"namespace": "s3://elsewhere", "name": "x.csv"}]},
        {"destination": "s3://elsewhere"},
        {"environment": "prod"},
        {"context": {"rows": 2}},
    ],
    ids=lambda c: next(iter(c)),
)
def test_any_change_to_the_action_changes_its_digest(change: dict[str, Any]) -> None:
    data: dict[str, Any] = {"kind": "export", "inputs": [CUSTOMERS], "context": {"rows": 1}}
    assert action_digest({**data, **change}) != action_digest(data)


def test_the_same_action_in_another_order_has_the_same_digest() -> None:
    other = {"namespace": "s3://partner-share", "name": "x.csv"}
    one = {"kind": "export", "inputs": [CUSTOMERS, other], "context": {"a": 1, "b": 2}}
    two = {"context": {"b": 2, "a": 1}, "inputs": [other, CUSTOMERS], "kind": "EXPORT"}
    assert action_digest(one) == action_digest(two)
