//! Reads the runtime's struct layouts and constants from a Go binary's own DWARF (gimli over
//! the sections `object` decompresses: Go compresses its DWARF). DWARF is the first source
//! because it describes exactly the runtime the target was built with, whatever its version.

use std::borrow::Cow;
use std::collections::HashMap;

use gimli::{AttributeValue, EndianSlice, LittleEndian, SectionId};
use object::{Object, ObjectSection};

use super::layout::{Field, GoConst, GoStruct, LayoutTable};

type Reader<'a> = EndianSlice<'a, LittleEndian>;

/// The largest DWARF section inflated (a large Go server's .debug_info is ~100 MB).
const MAX_SECTION_SIZE: u64 = 1 << 30;

/// One type DIE, reduced to what path resolution needs.
#[derive(Default)]
struct TypeDie {
    byte_size: Option<u64>,
    /// For typedefs: the aliased type.
    target: Option<usize>,
    members: Vec<Member>,
}

struct Member {
    name: String,
    offset: u64,
    ty: Option<usize>,
}

/// Whether the binary has DWARF at all (`-ldflags=-w` removes it).
pub fn has_dwarf(file: &object::File<'_>) -> bool {
    file.section_by_name(".debug_info").is_some_and(|s| s.size() > 0)
}

/// Whether the binary's DWARF describes Go code: some compile unit says DW_LANG_Go.
/// `-ldflags=-w` drops Go's DWARF, but an externally linked (cgo) build can keep the DWARF of
/// its C objects (Go 1.19's linker leaves it), which describes no runtime type: such a binary
/// is read through the layout tables like any other `-w` build.
pub fn has_go_dwarf(file: &object::File<'_>) -> Result<bool, String> {
    if !has_dwarf(file) {
        return Ok(false);
    }
    // DWARF that cannot even be loaded (e.g. a section stating an absurd inflated size) is an
    // error, not "no DWARF": it says something is wrong with the binary.
    let sections = load_sections(file)?;
    let Ok(dwarf) = gimli::Dwarf::load(|id| -> Result<Reader<'_>, gimli::Error> {
        Ok(EndianSlice::new(sections.get(&id).map_or(&[][..], |c| &c[..]), LittleEndian))
    }) else {
        return Ok(false);
    };
    let mut units = dwarf.units();
    // Each unit costs its header and first DIE; a malformed one ends the search.
    while let Ok(Some(header)) = units.next() {
        let Ok(abbrevs) = dwarf.abbreviations(&header) else { return Ok(false) };
        let mut cursor = header.entries(&abbrevs);
        if let Ok(Some(cu)) = cursor.next_dfs()
            && cu.attr_value(gimli::DW_AT_language) == Some(AttributeValue::Language(gimli::DW_LANG_Go))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The DWARF sections the readers here use, decompressed.
fn load_sections<'a>(file: &'a object::File<'_>) -> Result<HashMap<SectionId, Cow<'a, [u8]>>, String> {
    let mut sections = HashMap::new();
    for id in [
        SectionId::DebugAbbrev,
        SectionId::DebugInfo,
        SectionId::DebugStr,
        SectionId::DebugLineStr,
        SectionId::DebugStrOffsets,
        SectionId::DebugAddr,
    ] {
        if let Some(s) = file.section_by_name(id.name()) {
            // A compressed section states its own inflated size: refuse a bomb before inflating.
            let stated = s.compressed_data().map_err(|e| format!("{}: {e}", id.name()))?.uncompressed_size;
            if stated > MAX_SECTION_SIZE {
                return Err(format!("{} states {stated} bytes uncompressed", id.name()));
            }
            let data = s.uncompressed_data().map_err(|e| format!("{}: {e}", id.name()))?;
            sections.insert(id, data);
        }
    }
    Ok(sections)
}

/// The layout table as the binary's DWARF states it; `Err` is a parse failure of the DWARF
/// itself. Fields the binary lacks are simply absent (the caller completes the table).
pub fn layout(file: &object::File<'_>) -> Result<LayoutTable, String> {
    let sections = load_sections(file)?;
    let dwarf = gimli::Dwarf::load(|id| -> Result<Reader<'_>, gimli::Error> {
        Ok(EndianSlice::new(sections.get(&id).map_or(&[][..], |c| &c[..]), LittleEndian))
    })
    .map_err(|e| e.to_string())?;

    let mut types: HashMap<usize, TypeDie> = HashMap::new();
    let mut structs_by_name: HashMap<String, usize> = HashMap::new();
    let mut table = LayoutTable::default();

    let mut units = dwarf.units();
    while let Some(header) = units.next().map_err(|e| e.to_string())? {
        // Entries are read straight from the header: building a full gimli Unit would also
        // parse each unit's line program, which nothing here needs.
        let abbrevs = dwarf.abbreviations(&header).map_err(|e| e.to_string())?;
        let global = |off: gimli::UnitOffset| off.to_debug_info_offset(&header).map(|o| o.0);
        let mut cursor = header.entries(&abbrevs);
        // The struct whose members we are collecting, and its depth.
        let mut current: Option<(usize, isize)> = None;
        while let Some(die) = cursor.next_dfs().map_err(|e| e.to_string())? {
            let depth = die.depth();
            if current.is_some_and(|(_, d)| depth <= d) {
                current = None;
            }
            // Go writes names inline (DW_FORM_string); a .debug_str reference is handled too.
            let name = match die.attr_value(gimli::DW_AT_name) {
                Some(AttributeValue::String(r)) => Some(r),
                Some(AttributeValue::DebugStrRef(o)) => dwarf.debug_str.get_str(o).ok(),
                _ => None,
            }
            .map(|r| String::from_utf8_lossy(r.slice()).into_owned());
            let ty = match die.attr_value(gimli::DW_AT_type) {
                Some(AttributeValue::UnitRef(o)) => global(o),
                Some(AttributeValue::DebugInfoRef(o)) => Some(o.0),
                _ => None,
            };
            match die.tag() {
                gimli::DW_TAG_member => {
                    if let (Some((owner, d)), Some(name)) = (current, name)
                        && depth == d + 1
                    {
                        let offset = die
                            .attr(gimli::DW_AT_data_member_location)
                            .and_then(|a| a.udata_value())
                            .unwrap_or(0);
                        if let Some(t) = types.get_mut(&owner) {
                            t.members.push(Member { name, offset, ty });
                        }
                    }
                }
                gimli::DW_TAG_constant => {
                    if let Some(name) = name
                        && let Some(c) = GoConst::ALL.iter().find(|c| c.name() == name)
                        && let Some(a) = die.attr(gimli::DW_AT_const_value)
                        && let Some(v) = a.sdata_value().or_else(|| a.udata_value().map(|u| u as i64))
                    {
                        table.consts[*c as usize] = Some(v);
                    }
                }
                tag => {
                    let is_type = matches!(
                        tag,
                        gimli::DW_TAG_structure_type
                            | gimli::DW_TAG_base_type
                            | gimli::DW_TAG_pointer_type
                            | gimli::DW_TAG_typedef
                            | gimli::DW_TAG_array_type
                            | gimli::DW_TAG_subroutine_type
                    );
                    if !is_type {
                        continue;
                    }
                    let Some(off) = global(die.offset()) else { continue };
                    // Go states no size on pointer types; they are the unit's address size.
                    let byte_size =
                        die.attr(gimli::DW_AT_byte_size).and_then(|a| a.udata_value()).or_else(|| {
                            (tag == gimli::DW_TAG_pointer_type).then(|| u64::from(header.address_size()))
                        });
                    let target = (tag == gimli::DW_TAG_typedef).then_some(ty).flatten();
                    types.insert(off, TypeDie { byte_size, target, members: Vec::new() });
                    if tag == gimli::DW_TAG_structure_type {
                        current = Some((off, depth));
                        if let Some(n) = name {
                            structs_by_name.entry(n).or_insert(off);
                        }
                    }
                }
            }
        }
    }

    let resolve = |start: usize, path: &str| -> Option<Field> {
        let mut ty = start;
        let mut offset = 0;
        for part in path.split('.') {
            let t = follow(&types, ty)?;
            let m = t.members.iter().find(|m| m.name == part)?;
            offset += m.offset;
            ty = m.ty?;
        }
        let size = follow(&types, ty)?.byte_size?;
        Some(Field { offset, size })
    };
    for (spec, slot) in table.slots() {
        let Some(&start) = structs_by_name.get(spec.strukt.name()) else { continue };
        *slot = spec.paths.iter().find_map(|p| resolve(start, p));
    }
    for s in GoStruct::ALL {
        table.sizes[s as usize] = structs_by_name.get(s.name()).and_then(|t| types.get(t)?.byte_size);
    }
    Ok(table)
}

/// Follows typedefs to the type that has the size and members.
fn follow(types: &HashMap<usize, TypeDie>, mut off: usize) -> Option<&TypeDie> {
    for _ in 0..16 {
        let t = types.get(&off)?;
        match t.target {
            Some(next) if t.members.is_empty() && t.byte_size.is_none() => off = next,
            _ => return Some(t),
        }
    }
    None
}
