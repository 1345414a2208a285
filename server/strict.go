package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"sync"
)

// encoding/json matches field names without regard to case and takes null
// for "absent"; the contract rejects unknown fields and wrong types. So
// before decoding, checkKeys walks the JSON and requires every key to be a
// field's exact name, and no value to be null unless the field is marked
// `null:"ok"`.
func checkKeys(data []byte, t reflect.Type) error {
	var v any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil // the decoder proper reports malformed JSON
	}
	if v == nil {
		return fmt.Errorf("the body must be an object, not null")
	}
	return checkValue(v, t, "")
}

func checkValue(v any, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			return nil // a type error the decoder reports
		}
		fields := fieldsOf(t)
		for key, val := range obj {
			f, ok := fields[key]
			if !ok {
				return fmt.Errorf("unknown field %q", path+key)
			}
			if val == nil {
				if !f.nullable {
					return fmt.Errorf("field %q must not be null", path+key)
				}
				continue
			}
			if err := checkValue(val, f.typ, path+key+"."); err != nil {
				return err
			}
		}
	case reflect.Slice:
		if arr, ok := v.([]any); ok && t.Elem().Kind() != reflect.Uint8 {
			for _, el := range arr {
				if err := checkValue(el, t.Elem(), path); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

type fieldInfo struct {
	typ      reflect.Type
	nullable bool
}

var fieldCache sync.Map // reflect.Type -> map[string]fieldInfo

// fieldsOf maps a struct's JSON names to their types. A json.RawMessage
// field is checked by whoever decodes it.
func fieldsOf(t reflect.Type) map[string]fieldInfo {
	if m, ok := fieldCache.Load(t); ok {
		return m.(map[string]fieldInfo)
	}
	m := map[string]fieldInfo{}
	raw := reflect.TypeOf(json.RawMessage{})
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		typ := f.Type
		if typ == raw {
			typ = reflect.TypeOf((*any)(nil)).Elem()
		}
		m[name] = fieldInfo{typ: typ, nullable: f.Tag.Get("null") == "ok"}
	}
	fieldCache.Store(t, m)
	return m
}
