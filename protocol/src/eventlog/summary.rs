//! The one-line human description of an event ([`Event::summary`]), built from its decoded data.

use std::collections::BTreeMap;

use super::Event;
use super::data::{EventData, PostCode};
use super::efi::{FirmwareBlob, ImageLoad, UefiVariable, VariableValue};
use super::text::{one_line, printable_ascii};

/// The one-line description of [`Event::summary`].
pub(crate) fn summary(event: &Event) -> String {
    match &event.decoded {
        EventData::Raw => raw_summary(&event.data),
        EventData::Malformed(reason) => {
            format!("malformed {} bytes: {reason}", event.data.len())
        }
        EventData::SpecId(spec) => {
            let algs: Vec<String> = spec.algorithms.iter().map(|a| a.alg.to_string()).collect();
            format!(
                "Spec ID Event03 (spec {}.{} errata {}): {}",
                spec.spec_version_major,
                spec.spec_version_minor,
                spec.spec_errata,
                algs.join(", ")
            )
        }
        EventData::StartupLocality(locality) => format!("StartupLocality = {locality}"),
        EventData::NoAction { signature } => one_line(signature),
        EventData::CrtmVersion(version) if version.is_empty() => "CRTM version (empty)".into(),
        EventData::CrtmVersion(version) => one_line(version),
        EventData::PostCode(PostCode::Text(text)) => one_line(text),
        EventData::PostCode(PostCode::Blob(blob)) | EventData::FirmwareBlob(blob) => {
            blob_summary(blob)
        }
        EventData::Variable(var) => variable_summary(var),
        EventData::ImageLoad(image) => image_summary(image),
        EventData::Separator { error: true, .. } => "error separator (0xffffffff)".into(),
        EventData::Separator { value: 0, .. } => "separator".into(),
        EventData::Separator { value, .. } => format!("separator {value:#010x}"),
        EventData::Action(text) | EventData::Ipl(text) => one_line(text),
        EventData::Gpt(gpt) => format!(
            "GPT disk {}: {} partition{}",
            gpt.disk_guid,
            gpt.partitions.len(),
            plural(gpt.partitions.len())
        ),
        EventData::HandoffTables(tables) => {
            let guids: Vec<String> = tables.tables.iter().map(|(g, _)| g.to_string()).collect();
            let prefix = tables
                .description
                .as_deref()
                .map(|d| format!("{}: ", one_line(d)))
                .unwrap_or_default();
            format!(
                "{prefix}{} configuration table{}: {}",
                guids.len(),
                plural(guids.len()),
                guids.join(", ")
            )
        }
        EventData::Tagged { id, data } => format!("tag {id:#010x}: {}", raw_summary(data)),
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn raw_summary(data: &[u8]) -> String {
    if data.is_empty() {
        return "(no data)".into();
    }
    if let Some(text) = printable_ascii(data) {
        return one_line(&text);
    }
    if data.len() <= 32 {
        return hex::encode(data);
    }
    format!("{} bytes", data.len())
}

fn blob_summary(blob: &FirmwareBlob) -> String {
    let place = format!("base {:#x} length {:#x}", blob.base, blob.length);
    match &blob.description {
        Some(description) => format!("{} ({place})", one_line(description)),
        None => format!("firmware blob {place}"),
    }
}

fn image_summary(image: &ImageLoad) -> String {
    if let Some(path) = image.device_path.file_path() {
        return one_line(&path);
    }
    if image.device_path.is_empty() && !image.device_path.malformed {
        return format!("image of {:#x} bytes, no device path", image.length);
    }
    one_line(&image.device_path.to_string())
}

fn variable_summary(var: &UefiVariable) -> String {
    let name = one_line(&var.name);
    match &var.value {
        VariableValue::Boolean(on) if var.name == "SecureBoot" => {
            format!("{name} = {}", if *on { "enabled" } else { "disabled" })
        }
        VariableValue::Boolean(on) => format!("{name} = {}", u8::from(*on)),
        VariableValue::Empty => format!("{name} (empty)"),
        VariableValue::SignatureDatabase(lists) => {
            let mut counts = BTreeMap::new();
            for list in lists {
                *counts.entry(list.signature_type).or_insert(0usize) += list.count;
            }
            let parts: Vec<String> = counts
                .into_iter()
                .map(|(kind, n)| {
                    let (one, many) = kind.noun();
                    format!("{n} {}", if n == 1 { one } else { many })
                })
                .collect();
            if parts.is_empty() {
                format!("{name}: no entries")
            } else {
                format!("{name}: {}", parts.join(", "))
            }
        }
        VariableValue::SignatureData { owner, data_len } => {
            format!("{name}: {data_len}-byte signature entry, owner {owner}")
        }
        VariableValue::BootOrder(order) => {
            let numbers: Vec<String> = order.iter().map(|n| format!("{n:04X}")).collect();
            format!("{name} = {}", numbers.join(","))
        }
        VariableValue::LoadOption(option) => {
            let path = option.device_path.to_string();
            format!(
                "{name} = {}: {}",
                one_line(&option.description),
                one_line(&path)
            )
        }
        VariableValue::Malformed(reason) => format!("{name}: malformed ({reason})"),
        VariableValue::Unknown => match printable_ascii(&var.data) {
            Some(text) => format!("{name} = {}", one_line(&text)),
            None => format!("{name} ({}): {} bytes", var.vendor, var.data.len()),
        },
    }
}
