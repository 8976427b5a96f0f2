package shred

import (
	"fmt"
	"reflect"
	"strings"
)

// Tag is the struct tag key that marks an event type's fields:
// `troupe:"personal"` on a field whose value is personal data, encrypted
// with its data subject's key; `troupe:"subject"` on the one field naming
// the data subject (stored in clear).
const Tag = "troupe"

// Values of the Tag struct tag.
const (
	TagPersonal = "personal"
	TagSubject  = "subject"
)

// field is one tagged field of an event type: its JSON name (as
// encoding/json writes it) and its Go name, for errors.
type field struct {
	json string
	gofn string
}

// typeSpec is what the shredder knows of one event type.
type typeSpec struct {
	name     string
	goType   reflect.Type
	subject  field
	personal []field
}

// specOf reads the tags of the struct type t (registered under name).
func specOf(name string, t reflect.Type) (*typeSpec, error) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil, fmt.Errorf("%v is not a struct", t)
	}
	spec := &typeSpec{name: name, goType: t}
	var subjects []field
	if err := collect(t, "", spec, &subjects, map[reflect.Type]bool{}); err != nil {
		return nil, err
	}
	switch {
	case len(spec.personal) == 0:
		return nil, fmt.Errorf("%v has no field tagged %s:%q", t, Tag, TagPersonal)
	case len(subjects) == 0:
		return nil, fmt.Errorf("%v has personal fields but no field tagged %s:%q naming their data subject", t, Tag, TagSubject)
	case len(subjects) > 1:
		return nil, fmt.Errorf("%v has %d fields tagged %s:%q (%s and %s); an event type names one data subject",
			t, len(subjects), Tag, TagSubject, subjects[0].gofn, subjects[1].gofn)
	}
	spec.subject = subjects[0]
	seen := map[string]string{spec.subject.json: spec.subject.gofn}
	for _, f := range spec.personal {
		if other, dup := seen[f.json]; dup {
			return nil, fmt.Errorf("%v: fields %s and %s are both written as JSON %q", t, other, f.gofn, f.json)
		}
		seen[f.json] = f.gofn
	}
	return spec, nil
}

// collect walks the fields of struct t as encoding/json flattens them
// (embedded structs without a JSON name contribute their fields).
func collect(t reflect.Type, prefix string, spec *typeSpec, subjects *[]field, visiting map[reflect.Type]bool) error {
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		jsonName, skip := jsonNameOf(sf)
		tag, tagged := sf.Tag.Lookup(Tag)
		gofn := prefix + sf.Name
		ft := sf.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if sf.Anonymous && !tagged && ft.Kind() == reflect.Struct && !hasJSONName(sf) {
			if skip {
				continue
			}
			if err := collect(ft, gofn+".", spec, subjects, visiting); err != nil {
				return err
			}
			continue
		}
		if !sf.IsExported() || skip {
			if tagged {
				return fmt.Errorf("%v: field %s is tagged %s:%q but encoding/json never writes it", t, gofn, Tag, tag)
			}
			continue
		}
		switch tag {
		case "":
			if tagged {
				return fmt.Errorf("%v: field %s has an empty %s tag (want %q or %q)", t, gofn, Tag, TagPersonal, TagSubject)
			}
			if err := refuseNested(sf.Type, gofn, visiting); err != nil {
				return fmt.Errorf("%v: %w", spec.goType, err)
			}
		case TagPersonal:
			spec.personal = append(spec.personal, field{json: jsonName, gofn: gofn})
		case TagSubject:
			*subjects = append(*subjects, field{json: jsonName, gofn: gofn})
		default:
			return fmt.Errorf("%v: field %s has the tag %s:%q (want %q or %q)", t, gofn, Tag, tag, TagPersonal, TagSubject)
		}
	}
	return nil
}

// refuseNested returns an error when a type reachable from t (a field's
// type that is not itself marked) has tagged fields: only the event's own
// fields can be marked, a nested value is encrypted whole by marking the
// field holding it.
func refuseNested(t reflect.Type, path string, visiting map[reflect.Type]bool) error {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Array || t.Kind() == reflect.Map {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || visiting[t] {
		return nil
	}
	visiting[t] = true
	defer delete(visiting, t)
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if tag, ok := sf.Tag.Lookup(Tag); ok {
			return fmt.Errorf("field %s.%s is tagged %s:%q inside the value of field %s: only an event type's own fields can be marked; mark %s %q to encrypt its whole value",
				path, sf.Name, Tag, tag, path, path, TagPersonal)
		}
		if err := refuseNested(sf.Type, path+"."+sf.Name, visiting); err != nil {
			return err
		}
	}
	return nil
}

// jsonNameOf returns the name encoding/json writes the field under, and
// whether it skips the field (json:"-").
func jsonNameOf(sf reflect.StructField) (string, bool) {
	tag := sf.Tag.Get("json")
	if tag == "-" {
		return "", true
	}
	name, _, _ := strings.Cut(tag, ",")
	if name == "" {
		name = sf.Name
	}
	return name, false
}

func hasJSONName(sf reflect.StructField) bool {
	name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
	return name != "" && name != "-"
}
