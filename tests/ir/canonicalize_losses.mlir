// RUN: dlc opt %s --passes canonicalize | filecheck %s
// RUN: dlc opt %s --passes canonicalize --check-each-pass

// A loss means what its from_logits says, and canonicalize never changes it:
// .dl source and the Builder build a cross-entropy of softmax (sigmoid)
// probabilities from the logits in the first place (compiler/ops/losses.py),
// while IR text that spells out the probability form keeps it -- the
// interpreter, native code and the gradient all compute the clipped form.
// --check-each-pass runs each function through the interpreter before and after.

// CHECK-LABEL: func.func @sparse
// CHECK-NEXT:    %0 = "dl.softmax"(%z) {axis = -1}
// CHECK-NEXT:    %1 = "dl.sparse_categorical_crossentropy"(%0, %y) {from_logits = false}
// CHECK-NEXT:    func.return %1
func.func @sparse(%z: tensor<?x10xf32, "N">, %y: tensor<?xi32, "N">) -> (tensor<f32>) {
  %0 = "dl.softmax"(%z) {axis = -1} : (tensor<?x10xf32, "N">) -> tensor<?x10xf32, "N">
  %1 = "dl.sparse_categorical_crossentropy"(%0, %y) {from_logits = false} : (tensor<?x10xf32, "N">, tensor<?xi32, "N">) -> tensor<f32>
  func.return %1 : tensor<f32>
}

// The probabilities' other user (an accuracy's argmax): argmax(softmax(z)) is argmax(z).
// CHECK-LABEL: func.func @shared
// CHECK-NEXT:    %0 = "dl.softmax"(%z) {axis = 1}
// CHECK-NEXT:    %1 = "dl.categorical_crossentropy"(%0, %t) {from_logits = false}
// CHECK-NEXT:    %2 = "dl.argmax"(%z) {axis = -1, keepdims = false}
// CHECK-NEXT:    func.return %1, %2
func.func @shared(%z: tensor<4x3xf32>, %t: tensor<4x3xf32>) -> (tensor<f32>, tensor<4xi64>) {
  %0 = "dl.softmax"(%z) {axis = 1} : (tensor<4x3xf32>) -> tensor<4x3xf32>
  %1 = "dl.categorical_crossentropy"(%0, %t) {from_logits = false} : (tensor<4x3xf32>, tensor<4x3xf32>) -> tensor<f32>
  %2 = "dl.argmax"(%0) {axis = -1, keepdims = false} : (tensor<4x3xf32>) -> tensor<4xi64>
  func.return %1, %2 : tensor<f32>, tensor<4xi64>
}

// CHECK-LABEL: func.func @binary
// CHECK-NEXT:    %0 = "dl.sigmoid"(%z)
// CHECK-NEXT:    %1 = "dl.binary_crossentropy"(%0, %t) {from_logits = false}
// CHECK-LABEL: func.func @logits
// CHECK-NEXT:    %0 = "dl.binary_crossentropy"(%z, %t) {from_logits = true}
func.func @binary(%z: tensor<?x1xf32, "N">, %t: tensor<?x1xf32, "N">) -> (tensor<f32>) {
  %0 = "dl.sigmoid"(%z) : (tensor<?x1xf32, "N">) -> tensor<?x1xf32, "N">
  %1 = "dl.binary_crossentropy"(%0, %t) {from_logits = false} : (tensor<?x1xf32, "N">, tensor<?x1xf32, "N">) -> tensor<f32>
  func.return %1 : tensor<f32>
}
func.func @logits(%z: tensor<?x1xf32, "N">, %t: tensor<?x1xf32, "N">) -> (tensor<f32>) {
  %0 = "dl.binary_crossentropy"(%z, %t) {from_logits = true} : (tensor<?x1xf32, "N">, tensor<?x1xf32, "N">) -> tensor<f32>
  func.return %0 : tensor<f32>
}

// argmax over another axis than the softmax's stays.
// CHECK-LABEL: func.func @other_axis
// CHECK-NEXT:    %0 = "dl.softmax"(%z) {axis = -1}
// CHECK-NEXT:    %1 = "dl.argmax"(%0) {axis = 0, keepdims = false}
// CHECK-NEXT:    func.return %1
func.func @other_axis(%z: tensor<4x3xf32>) -> (tensor<3xi64>) {
  %0 = "dl.softmax"(%z) {axis = -1} : (tensor<4x3xf32>) -> tensor<4x3xf32>
  %1 = "dl.argmax"(%0) {axis = 0, keepdims = false} : (tensor<4x3xf32>) -> tensor<3xi64>
  func.return %1 : tensor<3xi64>
}
