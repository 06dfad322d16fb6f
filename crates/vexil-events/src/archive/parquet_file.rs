//! The Parquet form of an archive file: the same records as the JSON lines, as one row group of
//! typed columns, snappy-compressed (pure Rust, so no C toolchain is needed).
//!
//! The schema is flat, for analysts' tools (pyarrow, DuckDB, Spark, pandas) to read without
//! unpacking:
//!
//! | column | Parquet type | |
//! |---|---|---|
//! | `event_id`, `event`, `type`, `user_id` | `binary (STRING)`, required | |
//! | `timestamp` | `int64 (TIMESTAMP(MICROS, UTC))`, required | the event time |
//! | `value` | `double`, optional | |
//! | `received_at` | `int64 (TIMESTAMP(MILLIS, UTC))`, required | when the log accepted it |
//! | `experiment_key`, `variant` | `binary (STRING)`, optional | set on exposures |
//! | `properties` | `binary (JSON)`, optional | the properties object as JSON text; null when empty |
//! | `experiments` | `map<string, string>`, required | the attribution: experiment key → variant; empty when none |
//!
//! Why these types: each timestamp keeps the precision of its source. Senders may give event
//! times finer than a millisecond and the JSON lines keep them, so `timestamp` is in
//! microseconds (the native unit of Spark, BigQuery and DuckDB; digits below a microsecond are
//! dropped); receive times are milliseconds by construction. `properties` are free-form, so they
//! stay JSON text, annotated as JSON so DuckDB reads them as its JSON type and the others as a
//! string. The attribution has a fixed shape, so it is a real map: `experiments['checkout']`
//! works in SQL without a JSON function.
//!
//! The rows are parsed from the archive's JSON lines, the one record the pipeline builds for
//! either format, so the two cannot disagree on what an event is. Numbers and text come out
//! exactly: `value` is parsed from its JSON text with Rust's correctly rounded parser, and the
//! properties are the line's own bytes. Parsing the same lines gives the same bytes, so a file
//! rewritten after a crash is identical to the first one.

use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, DataType, DoubleType, Int64Type};
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::{SerializedFileWriter, SerializedRowGroupWriter};
use parquet::schema::parser::parse_message_type;
use parquet::schema::types::Type;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, LazyLock};

/// The columns, in the order [`ParquetRows::finish`] writes them.
const SCHEMA: &str = "
message event {
  required binary event_id (STRING);
  required binary event (STRING);
  required binary type (STRING);
  required binary user_id (STRING);
  required int64 timestamp (TIMESTAMP(MICROS,true));
  optional double value;
  required int64 received_at (TIMESTAMP(MILLIS,true));
  optional binary experiment_key (STRING);
  optional binary variant (STRING);
  optional binary properties (JSON);
  required group experiments (MAP) {
    repeated group key_value {
      required binary key (STRING);
      required binary value (STRING);
    }
  }
}";

static PARSED_SCHEMA: LazyLock<Arc<Type>> =
    LazyLock::new(|| Arc::new(parse_message_type(SCHEMA).expect("the archive schema parses")));

/// One archive line, as `pipeline` writes it.
#[derive(Deserialize)]
struct Line<'a> {
    event_id: String,
    event: String,
    #[serde(rename = "type")]
    kind: String,
    user_id: String,
    timestamp: &'a str,
    #[serde(borrow)]
    value: Option<&'a RawValue>,
    #[serde(borrow)]
    properties: Option<&'a RawValue>,
    experiment_key: Option<String>,
    variant: Option<String>,
    received_at: &'a str,
    #[serde(default)]
    experiments: BTreeMap<String, String>,
}

/// An optional column: the values present, and a definition level per row (1: present).
#[derive(Default)]
struct Nullable<T> {
    values: Vec<T>,
    levels: Vec<i16>,
}

impl<T> Nullable<T> {
    fn push(&mut self, value: Option<T>) {
        self.levels.push(i16::from(value.is_some()));
        self.values.extend(value);
    }
}

/// The `experiments` map as its two leaf columns. Per entry a definition level (1: an entry,
/// 0: the row's map is empty) and a repetition level (0: the row's first entry, 1: a further one).
#[derive(Default)]
struct MapColumn {
    keys: Vec<ByteArray>,
    values: Vec<ByteArray>,
    definition: Vec<i16>,
    repetition: Vec<i16>,
}

impl MapColumn {
    fn push(&mut self, entries: BTreeMap<String, String>) {
        if entries.is_empty() {
            self.definition.push(0);
            self.repetition.push(0);
        }
        for (i, (key, value)) in entries.into_iter().enumerate() {
            self.definition.push(1);
            self.repetition.push(i16::from(i > 0));
            self.keys.push(key.into_bytes().into());
            self.values.push(value.into_bytes().into());
        }
    }
}

/// The rows of one open Parquet file, column by column.
#[derive(Default)]
pub(super) struct ParquetRows {
    event_id: Vec<ByteArray>,
    event: Vec<ByteArray>,
    kind: Vec<ByteArray>,
    user_id: Vec<ByteArray>,
    timestamp: Vec<i64>,
    value: Nullable<f64>,
    received_at: Vec<i64>,
    experiment_key: Nullable<ByteArray>,
    variant: Nullable<ByteArray>,
    properties: Nullable<ByteArray>,
    experiments: MapColumn,
}

fn invalid(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("an archive line cannot become a Parquet row: {what}"))
}

fn text(s: String) -> ByteArray {
    s.into_bytes().into()
}

impl ParquetRows {
    /// Adds the row of one archive line.
    pub(super) fn add(&mut self, line: &[u8]) -> io::Result<()> {
        let line: Line = serde_json::from_slice(line).map_err(invalid)?;
        let time = |t: &str| chrono::DateTime::parse_from_rfc3339(t).map_err(|e| invalid(format!("{t:?}: {e}")));
        let timestamp = time(line.timestamp)?.timestamp_micros();
        let received_at = time(line.received_at)?.timestamp_millis();
        let value = match line.value {
            Some(raw) => Some(raw.get().parse::<f64>().map_err(|e| invalid(format!("value {}: {e}", raw.get())))?),
            None => None,
        };
        self.event_id.push(text(line.event_id));
        self.event.push(text(line.event));
        self.kind.push(text(line.kind));
        self.user_id.push(text(line.user_id));
        self.timestamp.push(timestamp);
        self.value.push(value);
        self.received_at.push(received_at);
        self.experiment_key.push(line.experiment_key.map(text));
        self.variant.push(line.variant.map(text));
        self.properties.push(line.properties.map(|raw| raw.get().as_bytes().into()));
        self.experiments.push(line.experiments);
        Ok(())
    }

    /// The finished file.
    pub(super) fn finish(self) -> io::Result<Vec<u8>> {
        self.encode().map_err(io::Error::other)
    }

    fn encode(self) -> Result<Vec<u8>, ParquetError> {
        let properties = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
        let mut writer = SerializedFileWriter::new(Vec::new(), PARSED_SCHEMA.clone(), Arc::new(properties))?;
        let mut group = writer.next_row_group()?;
        write::<ByteArrayType>(&mut group, &self.event_id, None, None)?;
        write::<ByteArrayType>(&mut group, &self.event, None, None)?;
        write::<ByteArrayType>(&mut group, &self.kind, None, None)?;
        write::<ByteArrayType>(&mut group, &self.user_id, None, None)?;
        write::<Int64Type>(&mut group, &self.timestamp, None, None)?;
        write::<DoubleType>(&mut group, &self.value.values, Some(&self.value.levels), None)?;
        write::<Int64Type>(&mut group, &self.received_at, None, None)?;
        for column in [&self.experiment_key, &self.variant, &self.properties] {
            write::<ByteArrayType>(&mut group, &column.values, Some(&column.levels), None)?;
        }
        let map = &self.experiments;
        for column in [&map.keys, &map.values] {
            write::<ByteArrayType>(&mut group, column, Some(&map.definition), Some(&map.repetition))?;
        }
        group.close()?;
        writer.into_inner()
    }
}

/// Writes the next column of the schema.
fn write<T: DataType>(
    group: &mut SerializedRowGroupWriter<'_, Vec<u8>>,
    values: &[T::T],
    definition: Option<&[i16]>,
    repetition: Option<&[i16]>,
) -> Result<(), ParquetError> {
    let mut column =
        group.next_column()?.ok_or_else(|| ParquetError::General("more columns than the schema".into()))?;
    column.typed::<T>().write_batch(values, definition, repetition)?;
    column.close()
}

#[cfg(test)]
mod tests {
    use crate::archive::{partition_of, ArchiveFormat, ArchiveOptions, Archiver, LocalArchive};
    use crate::event::{Event, EventType};
    use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::{Field, Row};
    use serde_json::json;
    use std::path::Path;

    /// A row as read back, with each column's type checked on the way.
    #[derive(Debug, PartialEq)]
    struct ReadRow {
        event_id: String,
        event: String,
        kind: String,
        user_id: String,
        timestamp_micros: i64,
        value: Option<f64>,
        received_millis: i64,
        experiment_key: Option<String>,
        variant: Option<String>,
        properties: Option<String>,
        experiments: Vec<(String, String)>,
    }

    fn string(field: &Field) -> Option<String> {
        match field {
            Field::Str(s) => Some(s.clone()),
            Field::Null => None,
            other => panic!("not a string column: {other:?}"),
        }
    }

    impl ReadRow {
        fn of(row: &Row) -> ReadRow {
            let columns: Vec<(&String, &Field)> = row.get_column_iter().collect();
            let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(
                names,
                [
                    "event_id",
                    "event",
                    "type",
                    "user_id",
                    "timestamp",
                    "value",
                    "received_at",
                    "experiment_key",
                    "variant",
                    "properties",
                    "experiments"
                ]
            );
            let field = |i: usize| columns[i].1;
            let required = |i: usize| string(field(i)).expect("a required column");
            ReadRow {
                event_id: required(0),
                event: required(1),
                kind: required(2),
                user_id: required(3),
                timestamp_micros: match field(4) {
                    Field::TimestampMicros(t) => *t,
                    other => panic!("timestamp: {other:?}"),
                },
                value: match field(5) {
                    Field::Double(v) => Some(*v),
                    Field::Null => None,
                    other => panic!("value: {other:?}"),
                },
                received_millis: match field(6) {
                    Field::TimestampMillis(t) => *t,
                    other => panic!("received_at: {other:?}"),
                },
                experiment_key: string(field(7)),
                variant: string(field(8)),
                properties: string(field(9)),
                experiments: match field(10) {
                    Field::MapInternal(map) => {
                        map.entries().iter().map(|(k, v)| (string(k).unwrap(), string(v).unwrap())).collect()
                    }
                    other => panic!("experiments: {other:?}"),
                },
            }
        }

        /// The row an event must become.
        fn expected(event: &Event, received: i64, attribution: &[(&str, &str)]) -> ReadRow {
            let kind = serde_json::to_value(event.kind).unwrap().as_str().unwrap().to_string();
            ReadRow {
                event_id: event.event_id.clone(),
                event: event.event.clone(),
                kind,
                user_id: event.user_id.clone(),
                timestamp_micros: event.timestamp.timestamp_micros(),
                value: event.value,
                received_millis: received,
                experiment_key: event.experiment_key.clone(),
                variant: event.variant.clone(),
                properties: (!event.properties.is_empty()).then(|| serde_json::to_string(&event.properties).unwrap()),
                experiments: attribution.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            }
        }
    }

    fn read(path: &Path) -> Vec<ReadRow> {
        let reader = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
        reader.get_row_iter(None).unwrap().map(|row| ReadRow::of(&row.unwrap())).collect()
    }

    /// The archive line of an event, in the shape the pipeline gives it.
    fn line(event: &Event, received: i64, attribution: &[(&str, &str)]) -> Vec<u8> {
        let mut line = serde_json::to_value(event).unwrap();
        let received = Utc.timestamp_millis_opt(received).unwrap().to_rfc3339_opts(SecondsFormat::Millis, true);
        line["received_at"] = json!(received);
        if !attribution.is_empty() {
            line["experiments"] = attribution.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        }
        serde_json::to_vec(&line).unwrap()
    }

    fn event(id: usize, timestamp: &str) -> Event {
        Event {
            event_id: format!("e{id}"),
            event: "purchase".into(),
            kind: EventType::Track,
            user_id: format!("user_{}", id % 3),
            timestamp: DateTime::parse_from_rfc3339(timestamp).unwrap().with_timezone(&Utc),
            value: None,
            properties: Default::default(),
            experiment_key: None,
            variant: None,
        }
    }

    fn parquet_archiver(root: &Path, max_events: usize) -> Archiver {
        let options = ArchiveOptions { format: ArchiveFormat::Parquet, max_events, ..ArchiveOptions::default() };
        Archiver::new(std::sync::Arc::new(LocalArchive::open(root).unwrap()), 0, options)
    }

    #[test]
    fn parquet_files_read_back_with_every_column_exact() {
        let mut events = Vec::new();
        // Sub-millisecond precision, a value that is not a short decimal, nested and non-ASCII
        // properties, an exposure, attribution to none, one and two experiments, two hours.
        let mut e = event(0, "2026-11-21T10:00:00.123456Z");
        e.value = Some(0.1 + 0.2);
        e.properties =
            json!({"currency": "EUR", "items": [1, {"sku": "ä\"b"}], "gift": null}).as_object().unwrap().clone();
        events.push((e, 1_763_720_000_001, vec![]));
        let mut e = event(1, "2026-11-21T10:59:59Z");
        e.kind = EventType::Exposure;
        e.event = "exposure".into();
        e.experiment_key = Some("checkout".into());
        e.variant = Some("treatment".into());
        events.push((e, 1_763_720_000_002, vec![("checkout", "treatment")]));
        let mut e = event(2, "2026-11-21T10:30:00.5+02:00");
        e.value = Some(-1e300);
        events.push((e, 1_763_720_000_003, vec![("checkout", "treatment"), ("pricing", "control")]));
        events.push((event(3, "2026-11-21T11:00:00Z"), 1_763_720_000_004, vec![]));

        let dir = tempfile::tempdir().unwrap();
        let mut archiver = parquet_archiver(dir.path(), 1000);
        for (offset, (event, received, attribution)) in events.iter().enumerate() {
            let partition = partition_of(event.timestamp);
            archiver.add(&partition, offset as u64, *received, &line(event, *received, attribution)).unwrap();
        }
        assert!(archiver.written().unwrap().is_empty(), "no file closes before 1,000 events");
        let closed = archiver.close_all().unwrap();
        let names: Vec<String> = closed.iter().map(|c| format!("{}/{}", c.partition, c.name)).collect();
        // 10:30+02:00 is 08:30 UTC: partitions are by UTC time.
        assert_eq!(
            names,
            [
                "events/year=2026/month=11/day=21/hour=08/00000-00000000000000000002.parquet",
                "events/year=2026/month=11/day=21/hour=10/00000-00000000000000000000.parquet",
                "events/year=2026/month=11/day=21/hour=11/00000-00000000000000000003.parquet",
            ]
        );
        let files = LocalArchive::open(dir.path()).unwrap().files().unwrap();
        assert_eq!(files.len(), 3);
        let rows: Vec<ReadRow> = files.iter().flat_map(|f| read(f)).collect();
        let expected: Vec<ReadRow> = [2, 0, 1, 3]
            .iter()
            .map(|&i| {
                let (event, received, attribution) = &events[i];
                ReadRow::expected(event, *received, attribution)
            })
            .collect();
        assert_eq!(rows, expected);
        assert_eq!(rows[1].value, Some(0.30000000000000004));
        assert_eq!(rows[1].timestamp_micros % 1_000_000, 123_456);
        assert_eq!(rows[1].properties.as_deref(), Some(r#"{"currency":"EUR","gift":null,"items":[1,{"sku":"ä\"b"}]}"#));
    }

    #[test]
    fn a_file_rewritten_after_a_crash_is_the_same_file() {
        let partition = || "events/year=2026/month=11/day=21/hour=10".to_string();
        let lines: Vec<(u64, i64, Vec<u8>)> = (0..8)
            .map(|i| {
                let mut e = event(i, "2026-11-21T10:00:00Z");
                e.value = Some(i as f64 * 1.5);
                let received = 1_763_719_200_000 + i as i64;
                (10 + i as u64, received, line(&e, received, &[("checkout", "control")]))
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let files = || LocalArchive::open(dir.path()).unwrap().files().unwrap();

        let mut before = parquet_archiver(dir.path(), 4);
        let mut checkpoint = Vec::new();
        for (offset, received, line) in &lines {
            before.add(&partition(), *offset, *received, line).unwrap();
            if *offset == 15 {
                // What the last commit saved: the file of 10..13 is closed, 14 and 15 are open.
                checkpoint = before.open_files();
            }
        }
        // The second file was written, but the process died before its commit.
        assert_eq!(before.written().unwrap().len(), 2);
        let written: Vec<(String, Vec<u8>)> = files()
            .iter()
            .map(|f| (f.file_name().unwrap().to_str().unwrap().to_string(), std::fs::read(f).unwrap()))
            .collect();
        assert_eq!(
            written.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            ["00000-00000000000000000010.parquet", "00000-00000000000000000014.parquet"]
        );
        drop(before);

        let mut after = parquet_archiver(dir.path(), 4);
        after.restore(&checkpoint);
        for (offset, received, line) in &lines {
            if after.wants_replayed(&partition(), *offset) {
                after.add(&partition(), *offset, *received, line).unwrap();
            }
        }
        assert_eq!(after.written().unwrap().len(), 1, "replay closes the second file again");
        assert!(after.close_all().unwrap().is_empty(), "nothing is left open");
        let rewritten: Vec<Vec<u8>> = files().iter().map(|f| std::fs::read(f).unwrap()).collect();
        assert_eq!(rewritten.len(), 2);
        assert!(rewritten[1] == written[1].1, "the replayed file has other bytes than the first write");
        let ids: Vec<String> = files().iter().flat_map(|f| read(f)).map(|r| r.event_id).collect();
        assert_eq!(ids, (0..8).map(|i| format!("e{i}")).collect::<Vec<_>>());
    }

    #[test]
    fn a_line_that_is_not_an_archive_record_is_an_error_not_a_panic() {
        let mut rows = super::ParquetRows::default();
        let err = rows.add(br#"{"event_id": "x"}"#).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("missing field"), "{err}");
        let bad_time = json!({"event_id": "x", "event": "e", "type": "track", "user_id": "u",
                              "timestamp": "yesterday", "received_at": "2026-11-21T10:00:00Z"});
        let err = rows.add(&serde_json::to_vec(&bad_time).unwrap()).unwrap_err();
        assert!(err.to_string().contains("\"yesterday\""), "{err}");
    }
}
